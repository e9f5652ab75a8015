"""The rendered apply script: valid bash, ordered, waivers respected, and its
helpers idempotent when run for real on scratch files."""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import pytest

from hardening.apply import render_apply_script
from hardening.profile import list_profiles, load_profile
from hardening.shell import PRELUDE


@pytest.mark.parametrize("name", list_profiles())
def test_script_is_valid_bash(name: str) -> None:
    script = render_apply_script(load_profile(name))
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert script.startswith("# profile ")
    assert "set -euo pipefail" in script
    assert "DEBIAN_FRONTEND=noninteractive" in script


def test_every_control_reports_changed_or_unchanged() -> None:
    profile = load_profile("baseline")
    script = render_apply_script(profile)
    for sc in profile.controls:
        assert f"gs_begin {sc.id}\n" in script
    assert script.count("\ngs_end\n") == len(profile.controls)


def test_ssh_is_validated_before_reload_and_reloads_come_last() -> None:
    script = render_apply_script(load_profile("baseline"))
    assert script.index("sshd -t") < script.index("systemctl reload ssh")
    assert script.rindex("gs_begin ") < script.index("sysctl --system")
    # Packages are removed before configuration is written.
    assert script.index("gs_begin pkg-no-telnet-server") < script.index("gs_begin net-ip-forward")


def test_waived_controls_are_not_applied(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "id: p\nversion: '1'\nextends: baseline\nwaivers:\n"
        "  - {control: ssh-root-login, reason: console access, expires: 2030-01-01}\n"
    )
    profile = load_profile(path)
    script = render_apply_script(profile, today=date(2029, 1, 1))
    assert "gs_begin ssh-root-login" not in script
    assert "# ssh-root-login: waived (console access)" in script
    # Once the waiver expires the control is applied again.
    assert "gs_begin ssh-root-login" in render_apply_script(profile, today=date(2031, 1, 1))


def run_helpers(body: str, tmp_path: Path, prelude: str = PRELUDE) -> str:
    script = prelude + "\n" + body
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_set_line_is_idempotent(tmp_path: Path) -> None:
    conf = tmp_path / "login.defs"
    conf.write_text("# header\nPASS_MAX_DAYS\t99999\nUMASK 022\npass_max_days 1\n")
    body = (
        f"gs_begin one\ngs_set_line {conf} '^[[:space:]]*PASS_MAX_DAYS([[:space:]]|$)' "
        "'PASS_MAX_DAYS 365'\ngs_end\n"
    )
    assert run_helpers(body, tmp_path) == "goldsmith: changed one\n"
    assert conf.read_text() == "# header\nPASS_MAX_DAYS 365\nUMASK 022\npass_max_days 1\n"
    assert run_helpers(body, tmp_path) == "goldsmith: unchanged one\n"


def test_set_line_creates_file_and_comments_duplicates(tmp_path: Path) -> None:
    conf = tmp_path / "sub" / "x.conf"
    body = f"gs_begin a\ngs_set_line {conf} '^k[[:space:]]*=' 'k = 1' '' 0600\ngs_end\n"
    assert run_helpers(body, tmp_path) == "goldsmith: changed a\n"
    assert conf.read_text() == "k = 1\n"
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    conf.write_text("k = 2\nk=3\n")
    run_helpers(body, tmp_path)
    assert conf.read_text() == "k = 1\n# goldsmith: k=3\n"


def test_comment_out_stops_at_match_blocks(tmp_path: Path) -> None:
    conf = tmp_path / "sshd_config"
    conf.write_text("PermitRootLogin yes\nMatch User backup\n  PermitRootLogin yes\n")
    body = (
        f"gs_begin c\ngs_comment_out {conf} '^[[:space:]]*PermitRootLogin([[:space:]]|$)'\ngs_end\n"
    )
    assert run_helpers(body, tmp_path) == "goldsmith: changed c\n"
    assert conf.read_text().splitlines() == [
        "# goldsmith: PermitRootLogin yes",
        "Match User backup",
        "  PermitRootLogin yes",
    ]
    assert run_helpers(body, tmp_path) == "goldsmith: unchanged c\n"


def test_fix_mode_only_removes_bits(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    target.chmod(0o666)
    body = f'gs_begin m\ngs_fix_mode {target} 0640 "" ""\ngs_end\n'
    assert run_helpers(body, tmp_path) == "goldsmith: changed m\n"
    assert target.stat().st_mode & 0o7777 == 0o640
    target.chmod(0o400)
    assert run_helpers(body, tmp_path) == "goldsmith: unchanged m\n"
    assert target.stat().st_mode & 0o7777 == 0o400


def test_fix_mode_judges_a_symlink_by_its_target(tmp_path: Path) -> None:
    """Debian 13's /usr/share/keyrings/*.gpg are symlinks to *.pgp files: a
    link's own mode (always 0777) must not count as a change on every apply,
    and a link to a file with too wide a mode fixes that file."""
    target = tmp_path / "keyring.pgp"
    target.write_text("k")
    target.chmod(0o644)
    link = tmp_path / "keyring.gpg"
    link.symlink_to(target.name)
    body = f'gs_begin m\ngs_fix_mode {link} 0644 "" ""\ngs_end\n'
    assert run_helpers(body, tmp_path) == "goldsmith: unchanged m\n"
    target.chmod(0o666)
    assert run_helpers(body, tmp_path) == "goldsmith: changed m\n"
    assert target.stat().st_mode & 0o7777 == 0o644 and link.is_symlink()


def test_install_content_writes_through_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "sysctl.conf"
    real.write_text("a = 1\n")
    link = tmp_path / "99-sysctl.conf"
    link.symlink_to(real)
    body = f"gs_begin s\ngs_set_line {link} '^a[[:space:]]*=' 'a = 0'\ngs_end\n"
    assert run_helpers(body, tmp_path) == "goldsmith: changed s\n"
    assert link.is_symlink()
    assert real.read_text() == "a = 0\n"


def test_settings_edit_own_and_other_files_in_one_pass(tmp_path: Path) -> None:
    own = tmp_path / "d" / "60-own.conf"
    other = tmp_path / "sshd_config"
    other.write_text("PermitRootLogin yes\nPort 22\nMatch User b\n  PermitRootLogin yes\n")
    untouched = tmp_path / "50-cloud.conf"
    untouched.write_text("PasswordAuthentication no\n")
    link = tmp_path / "99-link.conf"
    link.symlink_to(other)
    spec = (
        "^[[:space:]]*PermitRootLogin([[:space:]]|$)\tPermitRootLogin no\n"
        "^[[:space:]]*MaxAuthTries([[:space:]]|$)\tMaxAuthTries 4"
    )
    body = (
        f"gs_begin s\ngs_settings {own} 0600 ssh $'{spec}' {own} {other} {untouched} {link}\n"
        'gs_end\necho "reload:$GS_RELOAD"\n'
    )
    assert run_helpers(body, tmp_path) == "goldsmith: changed s\nreload: ssh\n"
    assert own.read_text() == "PermitRootLogin no\nMaxAuthTries 4\n"
    assert oct(own.stat().st_mode & 0o777) == "0o600"
    assert other.read_text().splitlines() == [
        "# goldsmith: PermitRootLogin yes",
        "Port 22",
        "Match User b",
        "  PermitRootLogin yes",
    ]
    assert untouched.read_text() == "PasswordAuthentication no\n"
    assert link.is_symlink()
    assert run_helpers(body, tmp_path) == "goldsmith: unchanged s\nreload:\n"
    # A changed value in our own file is put back; a duplicate is commented out.
    own.write_text("# mine\nMaxAuthTries 6\nPermitRootLogin no\nMaxAuthTries 7\n")
    assert run_helpers(body, tmp_path) == "goldsmith: changed s\nreload: ssh\n"
    assert own.read_text() == (
        "# mine\nMaxAuthTries 4\nPermitRootLogin no\n# goldsmith: MaxAuthTries 7\n"
    )


def test_failure_names_the_control_and_command(tmp_path: Path) -> None:
    body = "gs_begin cron-enabled\nx=$(false; echo ok)\nsystemctl-missing --now cron\n"
    script = PRELUDE + "\n" + body
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode != 0
    # One message, from the command that stopped the script, not from the
    # failure swallowed inside the command substitution.
    assert done.stderr.count("goldsmith: failed") == 1, done.stderr
    assert "goldsmith: failed cron-enabled at line " in done.stderr
    assert ": systemctl-missing --now cron" in done.stderr


def test_failure_inside_a_helper_is_reported(tmp_path: Path) -> None:
    script = PRELUDE + f"\ngs_begin perm-x\ngs_fix_mode {tmp_path}/missing 0600 '' ''\n"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode != 0
    assert "goldsmith: failed perm-x at line " in done.stderr, done.stderr


def test_needed_packages_install_in_one_step_before_their_controls() -> None:
    from hardening.apply import needed_packages

    profile = load_profile("cis-level1-server")
    packages = needed_packages(profile)
    assert "cron" in packages and "nftables" in packages and "aide" in packages
    script = render_apply_script(profile)
    step = script.index("gs_begin packages\n")
    assert script.count("gs_begin packages\n") == 1
    # After removals, before the controls that enable or configure them.
    assert script.index("gs_begin pkg-no-telnet-server") < step
    assert step < script.index("gs_begin cron-enabled") < script.index("gs_begin cron-allow")
    # The control still names what it needs, so it stands alone too.
    cron = script[script.index("gs_begin cron-enabled") :]
    assert cron.split("\n")[1] == "gs_pkg_present cron"


def test_late_controls_run_after_the_reloads() -> None:
    script = render_apply_script(load_profile("cis-level1-server"))
    reloads = script.index("update-grub")
    assert script.rindex("gs_begin ssh-") < reloads < script.index("gs_begin logfile-access")
    assert script.index("gs_begin logfile-access") < script.index("gs_begin aide-installed")
    assert script.rstrip().endswith('echo "goldsmith: done"')
    baseline = render_apply_script(load_profile("baseline"))
    assert baseline.index("update-grub") > baseline.rindex("gs_end")


def test_control_phase_must_be_a_small_number(tmp_path: Path) -> None:
    from hardening.catalog import parse_catalog
    from hardening.errors import ProfileError

    text = (
        "controls:\n  - id: x\n    title: t\n    area: a\n    rationale: r\n"
        "    no_reference_reason: test\n    phase: {phase}\n    mechanism: script\n"
        "    params: {{check: 'true', expected: e}}\n"
    )
    assert parse_catalog([("c.yaml", text.format(phase=95))])["x"].phase == 95
    for bad in ("100", "late", "true"):
        with pytest.raises(ProfileError, match="phase"):
            parse_catalog([("c.yaml", text.format(phase=bad))])


def test_package_helpers_ask_dpkg_once_and_change_nothing_when_satisfied(
    tmp_path: Path,
) -> None:
    # bash is installed wherever these tests run; the other name is not a package.
    body = (
        "gs_begin p\ngs_pkg_present bash coreutils\n"
        "gs_pkg_absent goldsmith-no-such-package\ngs_end\n"
        "gs_pkg_states bash goldsmith-no-such-package\n"
    )
    out = run_helpers(body, tmp_path).splitlines()
    assert out[0] == "goldsmith: unchanged p"
    assert out[1].startswith("bash ii")
    assert len(out) == 2


def test_sysctl_masks_a_vendor_file_that_would_win_at_boot(tmp_path: Path) -> None:
    # procps' 99-protect-links.conf sorts after goldsmith's 60- file: a copy in
    # /etc masks it and loses the key there; earlier vendor files are left alone.
    etc, usr, proc = tmp_path / "etc", tmp_path / "usr", tmp_path / "proc"
    for folder in (etc, usr, proc / "fs"):
        folder.mkdir(parents=True)
    (usr / "99-protect-links.conf").write_text("fs.protected_fifos = 1\nfs.protected_regular = 2\n")
    (usr / "50-default.conf").write_text("fs.protected_fifos = 1\n")
    (usr / "99-other.conf").write_text("kernel.pid_max = 65536\n")
    (proc / "fs" / "protected_fifos").write_text("1\n")
    prelude = (
        PRELUDE.replace("/etc/sysctl.d", str(etc))
        .replace("/usr/lib/sysctl.d", str(usr))
        .replace("/run/sysctl.d", str(tmp_path / "run"))
        .replace("/usr/local/lib/sysctl.d", str(tmp_path / "local"))
        .replace("/etc/sysctl.conf", str(tmp_path / "sysctl.conf"))
        .replace("/proc/sys/", f"{proc}/")
    )
    body = (
        "gs_begin fifos\n"
        "gs_sysctl fs.protected_fifos 2 '^[[:space:]]*-?fs\\.protected_fifos[[:space:]]*='\n"
        "gs_end\n"
    )
    assert run_helpers(body, tmp_path, prelude).startswith("goldsmith: changed fifos\n")
    assert sorted(p.name for p in etc.iterdir()) == ["60-goldsmith.conf", "99-protect-links.conf"]
    assert (etc / "99-protect-links.conf").read_text() == (
        "# goldsmith: fs.protected_fifos = 1\nfs.protected_regular = 2\n"
    )
    assert (etc / "60-goldsmith.conf").read_text() == "fs.protected_fifos = 2\n"
    assert (proc / "fs" / "protected_fifos").read_text() == "2\n"
    assert run_helpers(body, tmp_path, prelude).startswith("goldsmith: unchanged fifos\n")


def test_settings_leave_a_line_elsewhere_that_says_what_ours_says(tmp_path: Path) -> None:
    # cloud-init writes "PasswordAuthentication no" again at each first boot;
    # commenting it out every time would make a second apply a change.
    own, cloud = tmp_path / "50-goldsmith.conf", tmp_path / "50-cloud-init.conf"
    cloud.write_text("PasswordAuthentication  no\nPermitRootLogin yes\n")
    spec = (
        "^[[:space:]]*PasswordAuthentication([[:space:]]|$)\tPasswordAuthentication no\n"
        "^[[:space:]]*PermitRootLogin([[:space:]]|$)\tPermitRootLogin no"
    )
    body = f"gs_begin s\ngs_settings {own} 0600 ssh $'{spec}' {cloud}\ngs_end\n"
    assert run_helpers(body, tmp_path) == "goldsmith: changed s\n"
    assert cloud.read_text() == "PasswordAuthentication  no\n# goldsmith: PermitRootLogin yes\n"
    cloud.write_text("PasswordAuthentication no\n")  # the next instance's first boot
    assert run_helpers(body, tmp_path) == "goldsmith: unchanged s\n"
