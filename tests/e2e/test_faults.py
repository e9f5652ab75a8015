"""Faults meet a clear end: a guest that never reaches SSH stops within its
timeout, names the stage, shows the serial console, and leaves no QEMU behind."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from builder.errors import GuestError
from builder.qemu import _PROBE_SECTOR
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
