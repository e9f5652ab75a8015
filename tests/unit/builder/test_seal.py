from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from builder.seal import SealItem, render_seal_script, sealed_items, sealing_plan

USER = "gsbuild"
BLOB = "AAAAC3NzaC1lZDI1NTE5AAAAIBuilderKeyBlobForThisOneRunOnly0123456789ab"
OTHER = "AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyThatMustStayInPlace0123456789ab"


@pytest.fixture
def plan() -> tuple[SealItem, ...]:
    return sealing_plan(USER, BLOB)


@pytest.fixture
def script(plan: tuple[SealItem, ...]) -> str:
    return render_seal_script(plan)


def item(plan: tuple[SealItem, ...], starts: str) -> SealItem:
    (found,) = [i for i in plan if i.what.startswith(starts)]
    return found


def bash(text: str, *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", text], capture_output=True, text=True, timeout=10, cwd=cwd, check=False
    )


# --- the plan -----------------------------------------------------------------

# virt-sysprep's default operations that apply to a Linux server template, and
# a command each must lead to (README: Sealing lists those left out and why).
SYSPREP = {
    "backup-files": "-name '*~' -o -name '*.bak'",
    "bash-history": "/root/.bash_history",
    "zsh-history": "/home/*/.zsh_history",
    "crash-data": "/var/crash/*",
    "abrt-data": "/var/spool/abrt/*",
    "cron-spool": "find /var/spool/cron -mindepth 2",
    "dhcp-client-state": "/var/lib/dhcp/*.leases*",
    "dhcp-server-state": "/var/lib/dhcp/*.leases*",
    "dovecot-data": "/var/lib/dovecot/*",
    "kerberos-hostkeytab": "/etc/krb5.keytab",
    "logfiles": "find /var/log -type f -exec truncate -s 0 {} +",
    "lvm-system-devices": "/etc/lvm/devices/system.devices",
    "machine-id": ": > /etc/machine-id",
    "mail-spool": "rm -rf /var/mail/* /var/spool/mail/*",
    "net-nmconn": "/etc/NetworkManager/system-connections/cloud-init-*.nmconnection",
    "pacct-log": "find /var/log -type f -exec truncate",
    "package-manager-cache": "apt-get clean",
    "passwd-backups": "rm -f /etc/passwd- /etc/shadow- /etc/group- /etc/gshadow- /etc/subuid-",
    "puppet-data-log": "/var/lib/puppet/*/*",
    "samba-db-log": "/var/lib/samba/*",
    "ssh-hostkeys": "rm -f /etc/ssh/ssh_host_*",
    "ssh-userdir": "known_hosts",
    "sssd-db-log": "/var/lib/sss/db/*",
    "tmp-files": "find /tmp /var/tmp -mindepth 1 -delete",
    "udev-persistent-net": "/etc/udev/rules.d/70-persistent-net.rules",
    "utmp": "rm -f /var/log/wtmp /var/log/btmp /var/log/lastlog",
}


def all_commands(plan: tuple[SealItem, ...]) -> str:
    return "\n".join(c for i in plan for c in i.commands)


def test_the_plan_covers_everything_a_template_must_not_carry(
    plan: tuple[SealItem, ...],
) -> None:
    def commands(starts: str) -> str:
        return "\n".join(item(plan, starts).commands)

    assert BLOB in commands("builder key") and "authorized_keys" in commands("builder key")
    assert "rm -f /var/log/cloud-init.log /var/log/cloud-init-output.log" in commands("cloud-init")
    assert "/etc/cloud/clean.d/*" in commands("cloud-init")
    assert "/var/lib/cloud/seed" in commands("cloud-init")
    assert "/etc/network/interfaces.d/50-cloud-init" in commands("cloud-init")
    assert "rm -f /etc/ssh/ssh_host_*" in commands("SSH host keys")
    assert ": > /etc/machine-id" in commands("machine-id")
    assert "/var/lib/dbus/machine-id" in commands("machine-id")
    assert "/var/lib/systemd/random-seed" in commands("machine-id")
    assert "apt-get clean" in commands("package manager")
    assert "/var/lib/apt/lists" in commands("package manager")
    assert "/tmp /var/tmp" in commands("temporary files")
    assert ".bash_history" in commands("shell histories")
    assert "/var/log" in commands("logs") and "/var/log/journal" in commands("logs")
    assert f"userdel --force --remove {USER}" in commands("builder account")
    assert "/etc/sudoers.d/90-cloud-init-users" in commands("builder account")
    assert "/var/log/wtmp" in commands("login records")
    assert "fstrim" in commands("free space")


@pytest.mark.parametrize("operation", sorted(SYSPREP))
def test_virt_sysprep_operations_are_covered(plan: tuple[SealItem, ...], operation: str) -> None:
    assert SYSPREP[operation] in all_commands(plan)


def test_every_item_says_why(plan: tuple[SealItem, ...]) -> None:
    assert len(plan) == 18
    assert len({i.what for i in plan}) == len(plan)
    for sealed in plan:
        assert sealed.what.strip() and sealed.commands
        assert len(sealed.why.split()) >= 5, sealed.what


def test_the_order_account_then_logs_then_login_records_then_free_space(
    plan: tuple[SealItem, ...],
) -> None:
    whats = [i.what for i in plan]
    assert whats[:2] == [
        "timers stopped for the rest of the build",
        "builder key in any authorized_keys",
    ]
    account = whats.index(f"builder account {USER} with its home, key and sudo rule")
    # What the account's removal writes (backups, log lines) is removed after it.
    assert account < whats.index("editor and account-database backups")
    assert account < whats.index("logs") < whats.index("login records (wtmp, btmp, lastlog)")
    assert whats[-1] == "free space zeroed, journal zeroed, then trimmed"
    commands = item(plan, "builder account").commands
    assert commands[0].startswith("userdel ")
    assert commands[-1].startswith("rm -f /etc/passwd- ")  # userdel has just written them


def test_free_space_is_committed_then_zeroed_then_the_journal_then_trimmed(
    plan: tuple[SealItem, ...],
) -> None:
    commands = list(plan[-1].commands)

    def at(text: str) -> int:
        (index,) = [i for i, c in enumerate(commands) if c.startswith(text)]
        return index

    fill, scrub = commands[at("gs_zero_fill()")], commands[at("gs_scrub_journal()")]
    assert fill.count("dd if=/dev/zero") == 2 and "0x4004662B" in scrub
    loop = 'while IFS= read -r m; do [ -n "$m" ] && {} "$m"; done <<< "$mounts"'
    assert at("sync") < at("auditd=$(pidof") < at(loop.format("gs_zero_fill"))
    assert at(loop.format("gs_zero_fill")) < at(loop.format("gs_scrub_journal"))
    assert at(loop.format("gs_scrub_journal")) < at("fstrim --verbose --all || true")
    assert "discard_max_bytes" in commands[-1]


def test_names_from_outside_are_shell_quoted() -> None:
    odd = sealing_plan("a b;reboot", "key'blob")
    text = all_commands(odd)
    assert "userdel --force --remove 'a b;reboot'" in text
    assert "rm -rf /home/'a b;reboot'" in text
    assert "grep -vF -- 'key'\"'\"'blob'" in text


# --- the script ---------------------------------------------------------------


def test_the_script_is_valid_bash(script: str) -> None:
    proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_script_stops_at_the_first_failure(script: str) -> None:
    assert script.splitlines()[:2] == ["#!/bin/bash", "set -euo pipefail"]


def test_every_item_is_a_comment_commands_and_a_marker(
    plan: tuple[SealItem, ...], script: str
) -> None:
    # A command may span lines (the zero-fill's guest program does).
    for sealed in plan:
        block = "\n".join(
            (
                f"# {sealed.what}: {sealed.why}",
                *sealed.commands,
                "echo " + shlex.quote(f"goldsmith-sealed: {sealed.what}"),
            )
        )
        assert f"\n{block}\n" in script


def test_only_the_poweroff_runs_detached(script: str) -> None:
    last = script.splitlines()[-1]
    assert last.startswith("setsid nohup bash -c ")
    # No terminal, no output, no input: nothing ties it to the SSH session.
    assert last.endswith(" > /dev/null 2>&1 < /dev/null &")
    words = shlex.split(last)
    assert words[:4] == ["setsid", "nohup", "bash", "-c"]
    # The session that ran the script ends before the guest goes down.
    tail = words[4]
    assert "ss -Htn state established '( sport = :22 )'" in tail
    assert tail.endswith("; systemctl poweroff --no-block")
    foreground = script.splitlines()[:-1]
    assert not any("poweroff" in line for line in foreground)


def test_sealed_items_reads_the_markers_the_script_prints(
    plan: tuple[SealItem, ...], script: str
) -> None:
    # Run only the script's marker lines: exactly what the build reads back.
    markers = "\n".join(
        line for line in script.splitlines() if line.startswith("echo 'goldsmith-sealed: ")
    )
    noise = "cloud-init: cleaned\nremoved '/etc/ssh/ssh_host_ed25519_key'\n"
    proc = bash(markers)
    assert proc.returncode == 0
    assert sealed_items(noise + proc.stdout + noise) == [i.what for i in plan]


def test_sealed_items_ignores_lines_that_only_mention_a_marker() -> None:
    output = "goldsmith-sealed: logs\n  goldsmith-sealed: indented\nx goldsmith-sealed: no\n"
    assert sealed_items(output) == ["logs"]
    assert sealed_items("") == []


# --- items run for real, on folders under tmp_path ------------------------------


def fake_tools(folder: Path, calls: Path, names: tuple[str, ...]) -> str:
    """Programs that log their argv to ``calls`` and succeed; returns a PATH."""
    folder.mkdir()
    for name in names:
        program = folder / name
        program.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        program.chmod(0o755)
    return f"{folder}:/usr/bin:/bin"


def run_item(sealing: SealItem, path: str) -> subprocess.CompletedProcess[str]:
    """One item's commands as the seal script runs them, with only ``path``'s tools."""
    script = "set -euo pipefail\n" + "\n".join(sealing.commands)
    return subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": path},
        timeout=20,
        check=False,
    )


def _free_space_tools(tmp_path: Path, mount: Path, calls: Path, zero_rc: int) -> str:
    """Fake tools for the free-space item: findmnt lists one ext4 mount point
    (ours), python3 runs the zero-by-extent program with exit ``zero_rc``
    (printing 3 MiB zeroed when 0), and dd writes a little into its file."""
    path = fake_tools(tmp_path / "bin", calls, ("findmnt", "fstrim", "pidof", "python3", "sync"))
    (tmp_path / "bin" / "findmnt").write_text(
        f'#!/bin/sh\necho "findmnt $*" >> {calls}\n'
        f'case "$*" in *TARGET*) echo {mount};; *) echo /dev/nonexistent-disk;; esac\n'
    )
    (tmp_path / "bin" / "python3").write_text(
        '#!/bin/sh\ncase "$*" in *0x127F*) for a; do b=$c; c=$a; done; '
        f'echo "zero $b $c" >> {calls}; '
        f"[ {zero_rc} = 0 ] && echo 3145728 1048576; exit {zero_rc};; esac\n"
        f'echo "python3 $*" >> {calls}\n'
    )
    (tmp_path / "bin" / "dd").write_text(
        f'#!/bin/sh\necho "dd $*" >> {calls}\nfor a; do case "$a" in of=*) '
        'printf zeros >> "${a#of=}";; esac; done\nexit 1\n'  # as dd does at ENOSPC
    )
    (tmp_path / "bin" / "dd").chmod(0o755)
    return path


def _run_free_space_item(
    tmp_path: Path, plan: tuple[SealItem, ...], zero_rc: int
) -> tuple[str, Path, Path]:
    """The free-space item run on a folder standing for an ext4 mount point;
    its stdout, the mount point and the tools' call log. Every run must end
    with the journal scrubbed."""
    mount, calls = tmp_path / "mnt", tmp_path / "calls"
    mount.mkdir()
    proc = run_item(plan[-1], _free_space_tools(tmp_path, mount, calls, zero_rc=zero_rc))
    assert proc.returncode == 0, proc.stderr
    assert f"goldsmith: journal of {mount} checkpointed and zeroed" in proc.stdout
    return proc.stdout, mount, calls


def test_the_free_space_item_zeroes_on_the_device_scrubs_and_trims(
    tmp_path: Path, plan: tuple[SealItem, ...]
) -> None:
    stdout, mount, calls = _run_free_space_item(tmp_path, plan, zero_rc=0)
    assert (
        f"goldsmith: zeroed 3 MiB of free space on {mount} "
        "(write-zeroes on /dev/nonexistent-disk, 1 MiB of it written through the file)" in stdout
    )
    calls_seen = calls.read_text().splitlines()
    order = [line.split()[0] for line in calls_seen]
    assert "dd" not in order  # nothing written through the file
    assert order.index("zero") < order.index("python3") < order.index("fstrim")
    # The program gets the fill file, then the device the file system is on.
    zero = next(line for line in calls_seen if line.startswith("zero "))
    assert zero == f"zero {mount}/.goldsmith-zero-fill /dev/nonexistent-disk"
    assert order[order.index("findmnt") + 1] == "sync"  # committed before anything else


def test_the_free_space_item_writes_zeros_through_a_file_when_the_device_cannot(
    tmp_path: Path, plan: tuple[SealItem, ...]
) -> None:
    # The program leaves its fill file behind when it fails: the fallback removes it.
    stdout, mount, calls = _run_free_space_item(tmp_path, plan, zero_rc=1)
    assert f"goldsmith: zeroed 0 MiB of free space on {mount} (written through a file)" in stdout
    assert list(mount.iterdir()) == []  # the fill file is gone
    order = [line.split()[0] for line in calls.read_text().splitlines()]
    assert order.index("zero") < order.index("dd") < order.index("python3")
    assert order.index("python3") < order.index("fstrim")


def test_auditd_stops_before_the_logs_are_emptied(plan: tuple[SealItem, ...]) -> None:
    # It would otherwise record the seal itself in the emptied audit.log.
    whats = [i.what for i in plan]
    assert whats.index("audit daemon stopped") == whats.index("logs") - 1
    commands = " ".join(item(plan, "audit daemon stopped").commands)
    assert "systemctl stop" not in commands  # Debian's unit refuses a manual stop
    assert "auditctl --signal TERM" in commands


def _run_audit_item(tmp_path: Path, plan: tuple[SealItem, ...], pidof: str) -> tuple[int, str]:
    calls = tmp_path / "calls"
    path = fake_tools(tmp_path / "bin", calls, ("auditctl", "kill", "sleep"))
    (tmp_path / "bin" / "pidof").write_text(f"#!/bin/bash\n{pidof}\n")
    (tmp_path / "bin" / "pidof").chmod(0o755)
    proc = run_item(item(plan, "audit daemon stopped"), path)
    return proc.returncode, calls.read_text() if calls.exists() else ""


def test_the_audit_item_signals_auditd_and_waits_for_it(
    tmp_path: Path, plan: tuple[SealItem, ...]
) -> None:
    # pidof finds auditd twice (the signal, the first wait), then it is gone.
    counter = tmp_path / "n"
    pidof = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n + 1)) > {counter}; "
        'if [ "$n" -lt 2 ]; then echo 4242; else exit 1; fi'
    )
    rc, calls = _run_audit_item(tmp_path, plan, pidof)
    assert rc == 0
    assert calls.splitlines()[0] == "auditctl --signal TERM"


def test_the_audit_item_fails_the_seal_when_auditd_stays(
    tmp_path: Path, plan: tuple[SealItem, ...]
) -> None:
    rc, calls = _run_audit_item(tmp_path, plan, "echo 4242")
    assert rc == 1
    assert calls.count("sleep 0.5") == 60


def test_the_audit_item_does_nothing_without_auditd(
    tmp_path: Path, plan: tuple[SealItem, ...]
) -> None:
    rc, calls = _run_audit_item(tmp_path, plan, "exit 1")
    assert rc == 0 and calls == ""


def test_the_journal_folder_is_recreated_empty_with_its_mode(
    tmp_path: Path, plan: tuple[SealItem, ...]
) -> None:
    (command,) = [c for c in item(plan, "logs").commands if c.startswith("if [ -d /var/log/j")]
    journal = tmp_path / "journal"
    (journal / ("0f" * 16)).mkdir(parents=True)
    (journal / ("0f" * 16) / "system.journal").write_bytes(b"LPKSHHRH")
    journal.chmod(0o2755)
    inode = journal.stat().st_ino
    proc = bash(command.replace("/var/log/", f"{tmp_path}/"))
    assert proc.returncode == 0, proc.stderr
    assert list(journal.iterdir()) == []
    assert journal.stat().st_mode & 0o7777 == 0o2755
    assert journal.stat().st_ino != inode  # a new folder: the old entries' block is freed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal"]


def test_the_cloud_init_item_does_what_cloud_init_clean_does(
    tmp_path: Path, plan: tuple[SealItem, ...]
) -> None:
    """cloud-init clean --logs --seed: logs, all of /var/lib/cloud (seed too),
    then every executable file in clean.d, and nothing that is not one."""
    root = tmp_path
    lib = root / "var/lib/cloud"
    for folder in ("instances/goldsmith-1", "seed/nocloud", "data"):
        (lib / folder).mkdir(parents=True)
    (lib / "data/instance-id").write_text("goldsmith-1\n")
    (root / "var/log").mkdir(parents=True)
    for log in ("cloud-init.log", "cloud-init-output.log", "syslog"):
        (root / "var/log" / log).write_text("x\n")
    clean_d = root / "etc/cloud/clean.d"
    clean_d.mkdir(parents=True)
    ran = root / "ran"
    (clean_d / "10-runs").write_text(f"#!/bin/sh\necho 10 >> {ran}\n")
    (clean_d / "10-runs").chmod(0o755)
    (clean_d / "20-not-executable").write_text(f"#!/bin/sh\necho 20 >> {ran}\n")
    commands = [
        c.replace("/var/", f"{root}/var/").replace("/etc/cloud/", f"{root}/etc/cloud/")
        for c in item(plan, "cloud-init").commands[:3]
    ]
    proc = bash("\n".join(commands))
    assert proc.returncode == 0, proc.stderr
    assert list(lib.iterdir()) == []
    assert sorted(p.name for p in (root / "var/log").iterdir()) == ["syslog"]
    assert ran.read_text() == "10\n"


# --- the builder key item, run for real -------------------------------------


def test_the_builder_key_is_removed_and_other_keys_stay(
    tmp_path: Path, plan: tuple[SealItem, ...]
) -> None:
    (command,) = item(plan, "builder key").commands
    root = tmp_path / "root" / ".ssh"
    alice = tmp_path / "home" / "alice" / ".ssh"
    builder = tmp_path / "home" / USER / ".ssh"
    nokeys = tmp_path / "home" / "bob"
    for folder in (root, alice, builder, nokeys):
        folder.mkdir(parents=True)
    root_keys = root / "authorized_keys"
    root_keys.write_text(
        f"ssh-ed25519 {OTHER} operator@site\n"
        f"ssh-ed25519 {BLOB} goldsmith-build-1\n"
        f'from="10.0.0.0/8" ssh-ed25519 {OTHER} restricted@site\n'
    )
    root_keys.chmod(0o600)
    (alice / "authorized_keys").write_text(f"ssh-ed25519 {OTHER} alice@laptop\n")
    (builder / "authorized_keys").write_text(f"ssh-ed25519 {BLOB} goldsmith-build-1\n")
    inode = root_keys.stat().st_ino

    # The same command with /root and /home moved under tmp_path.
    moved = command.replace("/root/", f"{tmp_path}/root/").replace("/home/", f"{tmp_path}/home/")
    assert moved.count(str(tmp_path)) == 2
    proc = bash(f"set -euo pipefail\n{moved}\necho after")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "after\n"
    assert root_keys.read_text() == (
        f"ssh-ed25519 {OTHER} operator@site\n"
        f'from="10.0.0.0/8" ssh-ed25519 {OTHER} restricted@site\n'
    )
    # Rewritten in place: same file, same mode.
    assert root_keys.stat().st_ino == inode
    assert root_keys.stat().st_mode & 0o777 == 0o600
    assert (alice / "authorized_keys").read_text() == f"ssh-ed25519 {OTHER} alice@laptop\n"
    assert (builder / "authorized_keys").read_text() == ""
    assert not list(tmp_path.rglob("*.tmp"))
    assert not (nokeys / ".ssh").exists()


def test_the_builder_key_item_succeeds_when_no_file_exists(
    tmp_path: Path, plan: tuple[SealItem, ...]
) -> None:
    (command,) = item(plan, "builder key").commands
    moved = command.replace("/root/", f"{tmp_path}/root/").replace("/home/", f"{tmp_path}/home/")
    proc = bash(f"set -euo pipefail\n{moved}\necho after")
    assert (proc.returncode, proc.stdout) == (0, "after\n")
    assert list(tmp_path.iterdir()) == []


def test_the_seal_script_is_part_of_the_build_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from builder import seal

    digest = seal.seal_script_digest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest) and seal.seal_script_digest() == digest
    shorter = seal.sealing_plan("builder", "BUILDER-KEY-BLOB")[:-1]
    monkeypatch.setattr(seal, "sealing_plan", lambda user, blob: shorter)
    assert seal.seal_script_digest() != digest


def _poweroff_tail(script: str) -> str:
    return shlex.split(script.splitlines()[-1])[4]


@pytest.mark.parametrize(
    ("open_for", "expected_polls"),
    [(0, 1), (3, 4), (1000, 100)],  # closed at once, after 3 polls, never (capped)
)
def test_the_poweroff_waits_for_the_ssh_connection_to_close(
    tmp_path: Path, script: str, open_for: int, expected_polls: int
) -> None:
    calls = tmp_path / "calls"
    path = fake_tools(tmp_path / "bin", calls, ("sleep", "systemctl"))
    # ss lists one established connection on port 22 for its first open_for calls.
    (tmp_path / "bin" / "ss").write_text(
        f'#!/bin/sh\necho "ss $*" >> {calls}\n'
        f'[ "$(grep -c "^ss " {calls})" -le {open_for} ] && '
        'echo "0 0 10.0.2.15:22 10.0.2.2:40000"\nexit 0\n'
    )
    (tmp_path / "bin" / "ss").chmod(0o755)
    proc = subprocess.run(
        ["bash", "-c", _poweroff_tail(script)],
        env={"PATH": path},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    seen = calls.read_text().splitlines()
    assert sum(line.startswith("ss ") for line in seen) == expected_polls
    assert seen[-1] == "systemctl poweroff --no-block"
    assert "sleep 2" not in seen


def test_the_poweroff_waits_two_seconds_without_ss(tmp_path: Path, script: str) -> None:
    calls = tmp_path / "calls"
    folder = tmp_path / "bin"
    fake_tools(folder, calls, ("sleep", "systemctl", "seq"))
    # Only the fakes and bash's builtins: no ss anywhere on PATH.
    proc = subprocess.run(
        ["/bin/bash", "-c", _poweroff_tail(script)],
        env={"PATH": str(folder)},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert calls.read_text().splitlines() == ["sleep 2", "systemctl poweroff --no-block"]
