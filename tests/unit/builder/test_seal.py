from __future__ import annotations

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


def test_the_plan_covers_everything_a_template_must_not_carry(
    plan: tuple[SealItem, ...],
) -> None:
    def commands(starts: str) -> str:
        return "\n".join(item(plan, starts).commands)

    assert BLOB in commands("builder key") and "authorized_keys" in commands("builder key")
    assert "cloud-init clean --logs --seed" in commands("cloud-init")
    assert "/var/lib/cloud/seed" in commands("cloud-init")
    assert "rm -f /etc/ssh/ssh_host_*" in commands("SSH host keys")
    assert ": > /etc/machine-id" in commands("machine-id")
    assert "/var/lib/dbus/machine-id" in commands("machine-id")
    assert "apt-get clean" in commands("apt caches")
    assert "/var/lib/apt/lists" in commands("apt caches")
    assert "/tmp /var/tmp" in commands("temporary files")
    assert ".bash_history" in commands("shell histories")
    assert "/var/log" in commands("logs") and "/var/log/journal" in commands("logs")
    assert f"userdel --force --remove {USER}" in commands("builder account")
    assert "/etc/sudoers.d/90-cloud-init-users" in commands("builder account")
    assert "fstrim" in commands("free space")


def test_every_item_says_why(plan: tuple[SealItem, ...]) -> None:
    assert len(plan) == 10
    assert len({i.what for i in plan}) == len(plan)
    for sealed in plan:
        assert sealed.what.strip() and sealed.commands
        assert len(sealed.why.split()) >= 5, sealed.what


def test_the_account_and_trim_come_last(plan: tuple[SealItem, ...]) -> None:
    assert plan[0].what == "builder key in any authorized_keys"
    assert plan[-2].what == f"builder account {USER} with its home, key and sudo rule"
    assert plan[-1].what == "free space released (fstrim)"


def test_names_from_outside_are_shell_quoted() -> None:
    odd = sealing_plan("a b;reboot", "key'blob")
    text = "\n".join(c for i in odd for c in i.commands)
    assert "userdel --force --remove 'a b;reboot'" in text
    assert "rm -rf /home/'a b;reboot'" in text
    assert "grep -vF -- 'key'\"'\"'blob'" in text


# --- the script ---------------------------------------------------------------


def test_the_script_is_valid_bash(script: str) -> None:
    proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_script_stops_at_the_first_failure(script: str) -> None:
    assert script.splitlines()[:2] == ["#!/bin/bash", "set -euo pipefail"]


def test_every_foreground_item_is_a_comment_commands_and_a_marker(
    plan: tuple[SealItem, ...], script: str
) -> None:
    lines = script.splitlines()
    for sealed in plan[:-2]:
        start = lines.index(f"# {sealed.what}: {sealed.why}")
        end = start + 1 + len(sealed.commands)
        assert lines[start + 1 : end] == list(sealed.commands)
        assert lines[end] == "echo " + shlex.quote(f"goldsmith-sealed: {sealed.what}")


def test_the_account_removal_and_poweroff_run_detached(
    plan: tuple[SealItem, ...], script: str
) -> None:
    last = script.splitlines()[-1]
    assert last.startswith("setsid nohup bash -c ")
    # No terminal, no output, no input: nothing ties it to the SSH session.
    assert last.endswith(" > /dev/null 2>&1 < /dev/null &")
    words = shlex.split(last)
    assert words[:4] == ["setsid", "nohup", "bash", "-c"]
    tail = [step.strip() for step in words[4].split(";")]
    # The session that ran the script has time to end before the account goes.
    assert tail[0] == "sleep 2"
    assert tail[-2:] == ["sync", "systemctl poweroff --no-block"]
    assert "userdel --force --remove gsbuild 2>/dev/null || true" in tail
    assert "fstrim --verbose --all || true" in tail
    assert tail.index("userdel --force --remove gsbuild 2>/dev/null || true") < tail.index(
        "fstrim --verbose --all || true"
    )


def test_nothing_removes_the_account_in_the_foreground(script: str) -> None:
    foreground = script.splitlines()[:-1]
    assert not any("userdel" in line or "poweroff" in line for line in foreground)
    assert not any(line.startswith("rm -rf /home/") for line in foreground)


def test_the_detached_tail_is_valid_bash(script: str) -> None:
    tail = shlex.split(script.splitlines()[-1])[4]
    proc = subprocess.run(["bash", "-n", "-c", tail], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_sealed_items_reads_the_markers_the_script_prints(
    plan: tuple[SealItem, ...], script: str
) -> None:
    # Run only the script's echo lines: exactly what the build reads back.
    markers = "\n".join(line for line in script.splitlines() if line.startswith("echo "))
    noise = "cloud-init: cleaned\nremoved '/etc/ssh/ssh_host_ed25519_key'\n"
    proc = bash(markers)
    assert proc.returncode == 0
    assert sealed_items(noise + proc.stdout + noise) == [i.what for i in plan]


def test_sealed_items_ignores_lines_that_only_mention_a_marker() -> None:
    output = "goldsmith-sealed: logs\n  goldsmith-sealed: indented\nx goldsmith-sealed: no\n"
    assert sealed_items(output) == ["logs"]
    assert sealed_items("") == []


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
