"""AppArmor on Debian 13: apparmor-profiles-enforce turns the complain-mode
profiles Debian 13's apparmor package ships into enforcing ones, once, and
its check reads the kernel's list of loaded profiles and the profile files;
apparmor-restrict-unprivileged-unconfined is a Debian 13 sysctl."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_custom_controls import BASH

from hardening.catalog import load_catalog
from hardening.facts import FILES, Facts, Section
from hardening.mechanisms import MECHANISMS
from hardening.profile import load_profile
from hardening.results import Status

ENFORCE = load_catalog()["apparmor-profiles-enforce"]

# Profile headers as Debian 13's apparmor 4.1.0 ships them (flags separated by
# commas or spaces, complain twice in Xorg's), and files the loader skips.
SHIPPED = {
    "Xorg": "profile Xorg /usr/lib/xorg/Xorg flags=(complain,attach_disconnected, complain) {\n}\n",
    "sbuild": (
        "profile sbuild /usr/bin/sbuild flags=(complain,attach_disconnected mediate_deleted) {\n}\n"
    ),
    "unprivileged_userns": "profile unprivileged_userns flags=(complain) {\n  allow userns,\n}\n",
    "transmission": (
        "profile transmission-daemon /usr/bin/transmission-daemon "
        "flags=(complain,attach_disconnected) {\n}\n"
        "profile transmission-cli /usr/bin/transmission-cli flags=(complain) {\n}\n"
    ),
    # Unconfined mode is not complain mode: left alone.
    "firefox": "profile firefox /usr/lib/firefox/firefox flags=(unconfined) {\n  userns,\n}\n",
    "usr.bin.man": "# flags=(complain) in a comment is no flag\n/usr/bin/man {\n}\n",
    "README": "flags=(complain)\n",
    "lsb_release.dpkg-old": "profile lsb_release flags=(complain) {\n}\n",
}
ENFORCED = {
    "Xorg": "profile Xorg /usr/lib/xorg/Xorg flags=(attach_disconnected) {\n}\n",
    "sbuild": "profile sbuild /usr/bin/sbuild flags=(attach_disconnected mediate_deleted) {\n}\n",
    "unprivileged_userns": "profile unprivileged_userns {\n  allow userns,\n}\n",
    "transmission": (
        "profile transmission-daemon /usr/bin/transmission-daemon "
        "flags=(attach_disconnected) {\n}\n"
        "profile transmission-cli /usr/bin/transmission-cli {\n}\n"
    ),
}


def lay_out(root: Path) -> Path:
    """A /etc/apparmor.d with Debian 13's kinds of profile, one of them disabled
    and one forced into complain mode by a link."""
    folder = root / "apparmor.d"
    for sub in ("disable", "force-complain", "abstractions"):
        (folder / sub).mkdir(parents=True)
    for name, text in SHIPPED.items():
        (folder / name).write_text(text)
    (folder / "nvidia_modprobe").write_text("profile nvidia_modprobe flags=(complain) {\n}\n")
    (folder / "disable" / "nvidia_modprobe").symlink_to(folder / "nvidia_modprobe")
    (folder / "lsb_release").write_text("profile lsb_release {\n}\n")
    (folder / "force-complain" / "lsb_release").symlink_to(folder / "lsb_release")
    return folder


def with_apparmor(root: Path, loaded: str = "") -> None:
    """AppArmor in the kernel, ``loaded`` its list of profiles."""
    (root / "securityfs").mkdir(exist_ok=True)
    (root / "securityfs" / "profiles").write_text(loaded)


def localised(code: str, root: Path) -> str:
    return code.replace("/etc/apparmor.d", str(root / "apparmor.d")).replace(
        "/sys/kernel/security/apparmor", str(root / "securityfs")
    )


def apply(root: Path) -> tuple[bool, list[str]]:
    """Run the control's apply as the apply script would (errexit, nullglob),
    apparmor_parser stubbed: whether it reported a change, what it reloaded."""
    stubs = (
        'gs_changed() { touch "$GS_TMP/changed"; }\n'
        'apparmor_parser() { printf "%s\\n" "$*" >>"$GS_TMP/reloaded"; }\n'
    )
    scratch = root / "tmp"
    scratch.mkdir(exist_ok=True)
    for name in ("changed", "reloaded"):
        (scratch / name).unlink(missing_ok=True)
    code = stubs + localised(ENFORCE.params["apply"], root)
    done = subprocess.run(
        [BASH, "-euo", "pipefail", "-O", "nullglob", "-c", code],
        env={"PATH": "/usr/bin:/bin", "GS_TMP": str(scratch), "LC_ALL": "C"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    reloaded = scratch / "reloaded"
    lines = reloaded.read_text().splitlines() if reloaded.exists() else []
    return (scratch / "changed").exists(), lines


def check(root: Path, loaded: str | None) -> list[str]:
    """The check's offenders, with ``loaded`` as the kernel's profiles file."""
    if loaded is not None:
        with_apparmor(root, loaded)
    done = subprocess.run(
        [BASH, "-c", localised(ENFORCE.params["check"], root)],
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.stdout.splitlines()


def test_apply_enforces_every_enabled_profile_once(tmp_path: Path) -> None:
    folder = lay_out(tmp_path)
    with_apparmor(tmp_path)
    changed, reloaded = apply(tmp_path)
    assert changed
    for name, text in ENFORCED.items():
        assert (folder / name).read_text() == text, name
    # Left alone: unconfined mode, comments, files the loader skips, and a
    # disabled profile, which is not loaded at all.
    for name in ("firefox", "usr.bin.man", "README", "lsb_release.dpkg-old"):
        assert (folder / name).read_text() == SHIPPED[name], name
    assert "flags=(complain)" in (folder / "nvidia_modprobe").read_text()
    assert not (folder / "force-complain" / "lsb_release").is_symlink()
    assert sorted(reloaded) == sorted(
        f"-r -- {folder / name}" for name in [*ENFORCED, "lsb_release"]
    )
    # Applying again changes nothing.
    assert apply(tmp_path) == (False, [])


def test_apply_reloads_nothing_without_apparmor_in_the_kernel(tmp_path: Path) -> None:
    folder = lay_out(tmp_path)
    changed, reloaded = apply(tmp_path)
    assert changed and reloaded == []
    assert (folder / "unprivileged_userns").read_text() == ENFORCED["unprivileged_userns"]


LOADED = "firefox (unconfined)\n/usr/bin/man (enforce)\nman_groff (enforce)\n"


def test_check_passes_once_applied_and_loaded(tmp_path: Path) -> None:
    lay_out(tmp_path)
    with_apparmor(tmp_path)
    apply(tmp_path)
    assert check(tmp_path, LOADED + "unprivileged_userns (enforce)\n") == []


@pytest.mark.parametrize(
    ("loaded", "reported"),
    [
        (LOADED + "unix-chkpwd (complain)\n", "loaded in complain mode: unix-chkpwd (complain)"),
        ("", "no AppArmor profile is loaded"),
        (None, "AppArmor is not enabled"),
    ],
)
def test_check_fails_on_what_the_kernel_lists(
    tmp_path: Path, loaded: str | None, reported: str
) -> None:
    lay_out(tmp_path)
    with_apparmor(tmp_path)
    apply(tmp_path)
    if loaded is None:
        (tmp_path / "securityfs" / "profiles").unlink()
    assert any(line.startswith(reported) for line in check(tmp_path, loaded))


def test_check_fails_on_profiles_set_to_complain_on_disk(tmp_path: Path) -> None:
    # Loaded enforcing, but the next boot would load them in complain mode.
    folder = lay_out(tmp_path)
    assert check(tmp_path, LOADED) == [
        f"complain flag: {folder / 'Xorg'}",
        f"forced to complain: {folder / 'lsb_release'}",
        f"complain flag: {folder / 'sbuild'}",
        f"complain flag: {folder / 'transmission'}",
        f"complain flag: {folder / 'unprivileged_userns'}",
    ]


def test_enforcing_is_level_2_on_both_releases() -> None:
    refs = ENFORCE.references
    assert [(r.benchmark, r.items, r.level) for r in refs.cis] == [
        ("debian12", ("1.3.1.4",), 2),
        ("debian13", ("1.3.1.3",), 2),
    ]
    assert "apparmor-profiles-enforce" not in {
        sc.id for sc in load_profile("cis-level1-server").controls
    }
    for profile in ("cis-level2-server", "hardened-server"):
        selected = {sc.id: sc for sc in load_profile(profile).controls}
        assert not selected["apparmor-profiles-enforce"].not_on


# ---- kernel.apparmor_restrict_unprivileged_unconfined ----

RESTRICT = load_catalog()["apparmor-restrict-unprivileged-unconfined"]
KEY = "kernel.apparmor_restrict_unprivileged_unconfined"


def judge_restrict(live: str, persisted: str) -> Status:
    mechanism = MECHANISMS["sysctl"]
    files = f"==> /etc/sysctl.d/60-goldsmith.conf <==\n{persisted}\n"
    facts = Facts({"sysctl": Section(0, live), FILES: Section(0, files)})
    return mechanism.evaluate(mechanism.parse(RESTRICT.params), facts).status


def test_restricting_unprivileged_unconfined_is_a_debian13_sysctl() -> None:
    assert RESTRICT.releases == ("13",)
    level1 = {sc.id: sc for sc in load_profile("cis-level1-server").controls}
    assert dict(level1[RESTRICT.id].not_on) == {"12": RESTRICT.releases_reason}
    assert judge_restrict(f"{KEY} = 1\n", f"{KEY} = 1\n") is Status.passed
    # Debian 13's kernel starts with it off.
    assert judge_restrict(f"{KEY} = 0\n", "") is Status.failed
    assert judge_restrict(f"{KEY} = 1\n", "") is Status.failed
    # A kernel without the switch proves nothing.
    assert judge_restrict(f"# {KEY} absent\n", f"{KEY} = 1\n") is Status.skipped
