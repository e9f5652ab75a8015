"""The accelerator probe: KVM when a guest really runs under it, TCG
otherwise, decided once per kernel and logged with its reason."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from builder.errors import ToolError
from builder.log import log
from builder.qemu_command import QEMU, Accelerator, file_arg, path_option
from builder.run import find_program, run

# A 512-byte boot sector: write "K" to COM1, then ask isa-debug-exit to end
# QEMU with status (0x10 << 1) | 1 = 33. Proves the firmware ran guest code.
_PROBE_SECTOR = bytes(
    [0xBA, 0xF8, 0x03, 0xB0, 0x4B, 0xEE, 0xBA, 0xF4, 0x00, 0xB0, 0x10, 0xEE, 0xF4, 0xEB, 0xFD]
)
_PROBE_EXIT = 33

_probed: dict[str, Accelerator] = {}


def _kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return f" ({lines[-1][-160:]})" if lines else ""


def _probe_boot_sector(workdir: Path, timeout: float) -> tuple[bool, str]:
    image = workdir / "probe.img"
    image.write_bytes(_PROBE_SECTOR + bytes(510 - len(_PROBE_SECTOR)) + b"\x55\xaa")
    serial = workdir / "probe-sector.log"
    cmd = [
        *(QEMU, "-accel", "kvm", "-cpu", "host", "-m", "64", "-nodefaults", "-display", "none"),
        *("-no-reboot", "-chardev", f"file,id=serial0,path={path_option(serial)}"),
        *("-serial", "chardev:serial0"),
        *("-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"),
        *("-drive", f"file={path_option(image)},format=raw,if=ide"),
    ]
    try:
        proc = run(cmd, check=False, timeout=timeout)
    except ToolError:
        return False, f"a boot sector under KVM did not finish within {timeout:.0f}s"
    ok = proc.returncode == _PROBE_EXIT and serial.read_bytes().startswith(b"K")
    return ok, f"a boot sector under KVM: exit {proc.returncode}{_last_line(proc.stderr)}"


def _probe_kernel(workdir: Path, kernel: Path, timeout: float) -> tuple[bool, str]:
    # Without a root device the kernel panics and, with panic=-1 and
    # -no-reboot, QEMU exits: reaching that panic means long mode, paging and
    # interrupts all worked under the accelerator.
    serial = workdir / "probe-kernel.log"
    cmd = [
        *(QEMU, "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults"),
        *("-display", "none", "-no-reboot"),
        *("-chardev", f"file,id=serial0,path={path_option(serial)}", "-serial", "chardev:serial0"),
        *("-kernel", file_arg(kernel)),
        *("-append", "console=ttyS0 panic=-1 root=/dev/goldsmith-probe"),
    ]
    try:
        proc = run(cmd, check=False, timeout=timeout)
    except ToolError:
        return False, f"a kernel under KVM did not finish booting within {timeout:.0f}s"
    text = serial.read_text(errors="replace") if serial.exists() else ""
    ok = proc.returncode == 0 and "Kernel panic" in text
    return ok, f"a kernel under KVM: exit {proc.returncode}{_last_line(proc.stderr)}"


def probe_accelerator(kernel: Path | None = None, *, timeout: float = 30.0) -> Accelerator:
    """KVM when a guest really runs under it, TCG otherwise.

    /dev/kvm existing proves little: nested or paravirtual hosts may accept
    KVM_CREATE_VM and still fail to run a real kernel. So the probe boots one
    (a Linux kernel to its panic when one is at hand, else a boot sector).
    ``GOLDSMITH_ACCEL=kvm|tcg`` overrides the probe.
    """
    forced = os.environ.get("GOLDSMITH_ACCEL")
    if forced:
        try:
            return Accelerator(forced)
        except ValueError as exc:
            raise ToolError(f"GOLDSMITH_ACCEL={forced!r}: expected 'kvm' or 'tcg'") from exc
    key = str(kernel)
    if key in _probed:
        return _probed[key]
    find_program(QEMU)
    if not _kvm_usable():
        choice, why = Accelerator.tcg, "/dev/kvm is missing or not accessible"
    else:
        with tempfile.TemporaryDirectory(prefix="goldsmith-probe-") as tmp:
            ok, why = _probe_boot_sector(Path(tmp), timeout)
            if ok and kernel is not None:
                ok, why = _probe_kernel(Path(tmp), kernel, timeout)
            elif ok:
                why = "a boot sector ran under KVM (no kernel at hand for a full probe)"
        choice = Accelerator.kvm if ok else Accelerator.tcg
    if choice is Accelerator.kvm:
        log.info("Accelerator: kvm (%s)", why if kernel is None else "a kernel booted under KVM")
    else:
        log.info("Accelerator: tcg, software emulation (KVM unusable: %s)", why)
    _probed[key] = choice
    return choice
