"""Faults meet a clear end: a guest that never reaches SSH stops within its
timeout, names the stage, shows the serial console, and leaves no QEMU behind."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.accel_probe import _PROBE_SECTOR
from builder.errors import GuestError
from validate.boot import boot_artifact

pytestmark = pytest.mark.vm


def _qemu_processes(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if "qemu-system" in line and marker in line]


def test_guest_without_ssh_times_out_with_its_serial_console(
    tmp_path: Path, vm_tools: None
) -> None:
    # A disk that boots nothing useful: firmware runs, SSH never answers.
    raw = tmp_path / "halt.img"
    raw.write_bytes(_PROBE_SECTOR + bytes(510 - len(_PROBE_SECTOR)) + b"\x55\xaa")
    disk = tmp_path / "halt.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(disk)], check=True
    )
    serial = tmp_path / "serial.log"
    start = time.monotonic()
    with (
        pytest.raises(GuestError) as failure,
        boot_artifact(disk, boot_timeout=8, serial_log=serial),
    ):
        pytest.fail("SSH came up on a guest that has no SSH server")
    elapsed = time.monotonic() - start
    message = failure.value.diagnostics()
    assert elapsed < 60
    assert "did not accept SSH" in message and "within 8s" in message
    assert f"stage: boot; last serial console lines ({serial})" in message
    assert _qemu_processes(str(tmp_path)) == []


def _fault_spec(folder: Path, name: str, script: str) -> Path:
    """The baseline spec without its upgrade, whose one provisioning step is ``script``."""
    text = (Path(__file__).resolve().parents[2] / "templates/debian-12-baseline.yaml").read_text()
    text = text.replace("name: debian-12-baseline", f"name: {name}")
    text = text.replace("upgrade: true", "upgrade: false")
    spec = folder / f"{name}.yaml"
    step = {"name": "fault", "shell": {"inline": script}}
    spec.write_text(text + "provision:\n  - " + json.dumps(step) + "\n")
    return spec


def _left_behind(out: Path, name: str) -> tuple[list[Path], list[Path], list[Path]]:
    return (
        list(out.glob(f"{name}-1.0.0.FAILED-*")),
        [p for p in out.glob(f"{name}-1.0.0") if p.exists()],
        list(out.glob(f".{name}-1.0.0.work-*")),
    )


def _build_until(
    spec: Path, out: Path, marker: str, *, own_group: bool = False
) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``goldsmith build`` and read its progress until a line holds
    ``marker``; the build is still running when this returns. With
    ``own_group`` the build and its children get a process group of their own
    (its id is the build's pid), so a test can pause all of them at once."""
    import signal
    import sys

    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "goldsmith"), "build", str(spec), "--out", str(out)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a terminal would: a test runner started in the background by a
        # non-interactive shell inherits SIGINT ignored, and Python keeps that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        start_new_session=own_group,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 1800
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            return proc, seen
        assert time.monotonic() < deadline, f"the build never reached {marker!r}"
    pytest.fail(f"the build ended before {marker!r}:\n" + "".join(seen[-40:]))


def test_ctrl_c_during_provisioning_cleans_up_and_exits_130(tmp_path: Path, vm_tools: None) -> None:
    import signal

    out = tmp_path / "out"
    spec = _fault_spec(tmp_path, "fault-sigint", "echo provisioning-started; sleep 900")
    proc, seen = _build_until(spec, out, "Provisioning step 0")
    time.sleep(5)  # the step is running in the guest
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=300)
    assert proc.returncode == 130, "".join(seen) + rest
    assert "goldsmith: interrupted" in rest
    failed, artifact, work = _left_behind(out, "fault-sigint")
    assert len(failed) == 1 and artifact == [] and work == []
    assert (failed[0] / "build.log").is_file() and (failed[0] / "serial.log").is_file()
    assert not (failed[0] / "disk.qcow2").exists()
    assert _qemu_processes(str(out)) == []


def test_ssh_dropped_mid_provisioning_fails_the_build_cleanly(
    tmp_path: Path, vm_tools: None
) -> None:
    import sys

    out = tmp_path / "out"
    # The step kills the sshd process serving goldsmith's own session.
    script = "(sleep 3; pkill -KILL -f 'sshd: gsbuild') & sleep 120"
    spec = _fault_spec(tmp_path, "fault-ssh", script)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "goldsmith"), "build", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "the SSH connection dropped mid-command" in proc.stderr, proc.stderr[-3000:]
    failed, artifact, work = _left_behind(out, "fault-ssh")
    assert len(failed) == 1 and artifact == [] and work == []
    assert not (failed[0] / "disk.qcow2").exists()
    assert _qemu_processes(str(out)) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A file system of its own for --out (tmpfs, 6 GiB at most), so filling it
    fills nothing else; unmounted after the test."""
    mount = tmp_path / "small-out"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6g,mode=0700", "tmpfs", mount], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", mount], check=False)


def _fill(path: Path) -> None:
    """Take every free block of ``path``'s file system (qemu-img is writing to
    it at the same time, so the free space shrinks while this runs)."""
    chunk = bytes(1 << 20)
    with path.open("wb", buffering=0) as f:
        stat = os.statvfs(path)
        with contextlib.suppress(OSError):
            os.posix_fallocate(f.fileno(), 0, max(stat.f_bavail * stat.f_frsize - (64 << 20), 1))
        f.seek(0, os.SEEK_END)
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk[:4096])


def test_output_disk_full_during_compaction_fails_cleanly(
    small_disk: Path, tmp_path: Path, vm_tools: None
) -> None:
    """The moment compaction starts, the rest of --out's file system is taken:
    qemu-img convert meets ENOSPC. The build must fail with one clear error (no
    traceback, not one per log line), leave its logs in .FAILED-*, free what it
    wrote and leave no template, work folder or QEMU behind."""
    import signal

    out = small_disk / "out"
    spec = _fault_spec(tmp_path, "fault-full", "true")
    proc, seen = _build_until(spec, out, "Compacting the template", own_group=True)
    # Compaction takes about 2 s (zstd, parallel writes): the build and its
    # qemu-img are paused while the disk fills, or the race is lost.
    os.killpg(proc.pid, signal.SIGSTOP)
    filler = small_disk / "filler"
    try:
        _fill(filler)
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    _, rest = proc.communicate(timeout=600)
    stderr = "".join(seen) + rest
    assert proc.returncode == 1, stderr[-3000:]
    assert "No space left on device" in rest, rest[-3000:]
    assert "qemu-img convert" in rest, rest[-3000:]
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr[-3000:]
    failed, artifact, work = _left_behind(out, "fault-full")
    assert len(failed) == 1 and artifact == [] and work == [], list(out.iterdir())
    kept = sorted(p.name for p in failed[0].iterdir())
    assert "build.log" in kept and "serial.log" in kept, kept
    # What it wrote is freed: only logs stay (no overlay, no partial template).
    assert not any(name.endswith(".qcow2") for name in kept), kept
    assert _qemu_processes(str(out)) == []
    filler.unlink()
