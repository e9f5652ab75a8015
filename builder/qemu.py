"""The one module that owns QEMU: the accelerator probe, the command line and
the process. ``start_vm`` is a context manager; no QEMU outlives it, nor its
software TPM or its copy of the firmware's variable store."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from builder import firmware as fw
from builder.errors import GuestError, ToolError
from builder.firmware import Firmware
from builder.log import log
from builder.run import build_environment, find_program, run

QEMU = "qemu-system-x86_64"


class Accelerator(enum.StrEnum):
    kvm = "kvm"
    tcg = "tcg"


@dataclasses.dataclass(frozen=True)
class KernelBoot:
    kernel: Path
    initrd: Path | None
    append: str


@dataclasses.dataclass(frozen=True)
class MachineConfig:
    disk: Path
    accelerator: Accelerator
    memory: int  # MiB
    cpus: int
    serial_log: Path
    seed: Path | None = None
    ssh_port: int | None = None
    kernel_boot: KernelBoot | None = None
    disk_format: str = "qcow2"
    snapshot: bool = False
    # A unix socket path must fit in 108 bytes, which work folders deep in a
    # cache or CI tree exceed; start_vm puts it in a short private folder.
    qmp_socket: Path | None = None
    # UEFI: OVMF's code (read-only) and this machine's own copy of a variable
    # store; start_vm fills both in from the firmware when they are None.
    firmware: Firmware = Firmware.bios
    firmware_code: Path | None = None
    firmware_vars: Path | None = None
    # A TPM 2.0 (swtpm); start_vm starts it and fills in its socket.
    tpm: bool = False
    tpm_socket: Path | None = None


def file_arg(path: Path | str) -> str:
    """A path as QEMU and qemu-img read a file name: absolute. QEMU's block
    layer reads a leading ``word:`` as a protocol (``nbd:``, ``json:{...}``,
    ``http:``), so a relative name such as ``--out nbd:host`` would open a
    network disk; an absolute path never has a protocol prefix."""
    return os.path.abspath(path)


def option_value(text: str) -> str:
    """A value inside a QEMU option list (``key=value,key=value``).

    QEMU reads ``,,`` as one literal comma, so a value cannot end early and
    add options of its own (``out/a,snapshot=off,file=/etc/shadow``).
    Doubling is QEMU's documented escape; it keeps every path usable rather
    than refusing commas (a folder name the user chose is not an error), and
    it is the same rule for every option list here, -drive and -chardev.
    """
    return text.replace(",", ",,")


def _path_option(path: Path | str) -> str:
    return option_value(file_arg(path))


def machine_type(config: MachineConfig) -> str:
    """q35 under KVM and for UEFI; i440fx (pc) for BIOS under TCG, as before.

    Secure Boot needs SMM: OVMF's secboot build keeps its variable store
    writable only from System Management Mode, so the guest OS cannot rewrite
    the keys that decide what boots.
    """
    if config.firmware is Firmware.uefi_secureboot:
        return "q35,smm=on"
    if config.firmware is Firmware.uefi or config.accelerator is Accelerator.kvm:
        return "q35"
    return "pc"


def build_command(config: MachineConfig) -> list[str]:
    """The QEMU argv for a machine: virtio disk and NIC, serial to a file, QMP
    on a private unix socket, no display, and SSH forwarded to 127.0.0.1 only.

    Every path inside an option list goes through ``_path_option`` (absolute,
    commas doubled); plain file arguments (-kernel, -initrd) through ``file_arg``.
    Serial and QMP use -chardev, whose ``path=`` is an option value like any
    other, rather than the ``file:``/``unix:`` shorthands whose parsing differs.
    """
    uefi = config.firmware.is_uefi
    if uefi and (config.firmware_code is None or config.firmware_vars is None):
        raise ValueError(f"firmware {config.firmware} needs firmware_code and firmware_vars")
    if config.tpm and config.tpm_socket is None:
        raise ValueError("a TPM needs tpm_socket")
    cmd = [
        QEMU,
        "-name",
        "goldsmith",
        "-machine",
        machine_type(config),
        "-accel",
        str(config.accelerator),
        "-cpu",
        "host" if config.accelerator is Accelerator.kvm else "max",
        "-m",
        str(config.memory),
        "-smp",
        str(config.cpus),
        "-nodefaults",
        "-display",
        "none",
        "-no-user-config",
        "-chardev",
        f"file,id=serial0,path={_path_option(config.serial_log)}",
        "-serial",
        "chardev:serial0",
    ]
    if uefi:
        assert config.firmware_code is not None and config.firmware_vars is not None
        # Code read-only: the guest cannot patch its own firmware. The
        # variable store is this machine's copy, never the package's file.
        cmd += [
            *(
                "-drive",
                f"if=pflash,format=raw,unit=0,readonly=on,file={_path_option(config.firmware_code)}",
            ),
            *("-drive", f"if=pflash,format=raw,unit=1,file={_path_option(config.firmware_vars)}"),
        ]
    if config.firmware is Firmware.uefi_secureboot:
        cmd += [
            # The flash answers writes only from SMM.
            *("-global", "driver=cfi.pflash01,property=secure,value=on"),
            # OVMF with SMM does not support S3 sleep.
            *("-global", "ICH9-LPC.disable_s3=1"),
        ]
    drive = (
        f"file={_path_option(config.disk)},if={'none,id=disk0' if uefi else 'virtio'},"
        f"format={config.disk_format},cache=unsafe,discard=unmap"
        + (",snapshot=on" if config.snapshot else "")
    )
    cmd += ["-drive", drive]
    if uefi:
        # bootindex reaches OVMF as fw_cfg's boot order: the disk first, so a
        # fresh variable store never tries network boot before it.
        cmd += ["-device", "virtio-blk-pci,drive=disk0,bootindex=0"]
    cmd += [
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
        "-device",
        "virtio-rng-pci,rng=rng0",
    ]
    if config.tpm:
        assert config.tpm_socket is not None
        cmd += [
            *("-chardev", f"socket,id=chrtpm,path={_path_option(config.tpm_socket)}"),
            *("-tpmdev", "emulator,id=tpm0,chardev=chrtpm"),
            # TIS works on both machine types and with SeaBIOS as with OVMF.
            *("-device", "tpm-tis,tpmdev=tpm0"),
        ]
    if config.qmp_socket is not None:
        cmd += [
            *(
                "-chardev",
                f"socket,id=qmp0,path={_path_option(config.qmp_socket)},server=on,wait=off",
            ),
            *("-mon", "chardev=qmp0,mode=control"),
        ]
    netdev = "user,id=net0"
    if config.ssh_port is not None:
        # Bound to loopback: the build VM's SSH is never reachable from the network.
        netdev += f",hostfwd=tcp:127.0.0.1:{config.ssh_port}-:22"
    cmd += ["-netdev", netdev, "-device", "virtio-net-pci,netdev=net0"]
    if config.seed is not None:
        cmd += [
            "-drive",
            f"file={_path_option(config.seed)},if=virtio,format=raw,readonly=on,media=cdrom",
        ]
    if config.kernel_boot is not None:
        # -kernel and -initrd take a file name as is, not an option list.
        boot = config.kernel_boot
        cmd += ["-kernel", file_arg(boot.kernel), "-append", boot.append]
        if boot.initrd is not None:
            cmd += ["-initrd", file_arg(boot.initrd)]
        cmd += ["-no-reboot"]
    return cmd


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    QEMU binds it a moment later; a race with another process is possible but
    shows up as a clear QEMU start failure, never as a connection to a stranger:
    the SSH host key is pinned.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def qemu_version() -> str:
    out = run([QEMU, "--version"]).stdout
    match = re.search(r"version (\S+)", out)
    return match.group(1) if match else out.strip().splitlines()[0]


# -- accelerator probe ------------------------------------------------------

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
        *("-no-reboot", "-chardev", f"file,id=serial0,path={_path_option(serial)}"),
        *("-serial", "chardev:serial0"),
        *("-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"),
        *("-drive", f"file={_path_option(image)},format=raw,if=ide"),
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
        *("-chardev", f"file,id=serial0,path={_path_option(serial)}", "-serial", "chardev:serial0"),
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


# -- the running machine ----------------------------------------------------


class Machine:
    def __init__(self, config: MachineConfig, proc: subprocess.Popen[bytes]) -> None:
        self.config = config
        self.proc = proc

    @property
    def ssh_port(self) -> int:
        assert self.config.ssh_port is not None
        return self.config.ssh_port

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def serial_tail(self, lines: int = 20) -> str:
        try:
            text = self.config.serial_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait(self, timeout: float) -> int | None:
        """Wait for QEMU to exit; the exit code, or None on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def qmp(self, command: str) -> None:
        """Send one QMP command (best effort: the machine may be going away)."""
        if self.config.qmp_socket is None:
            raise OSError("this machine has no QMP socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.config.qmp_socket))
            reader = s.makefile("rb")
            reader.readline()  # greeting
            for cmd in ("qmp_capabilities", command):
                s.sendall(json.dumps({"execute": cmd}).encode() + b"\n")
                while True:
                    reply = json.loads(reader.readline() or b"{}")
                    if "return" in reply or "error" in reply or not reply:
                        break

    def kill(self) -> None:
        """No graceful shutdown: for a guest that never came up, or already failed."""
        if self.running:
            self.proc.kill()
            self.proc.wait()

    def discard(self, timeout: float = 10.0) -> None:
        """End a machine whose disk state nobody keeps: QMP ``quit``, no power-off.

        For the validation VM, whose writes go to a throwaway overlay: a
        graceful ACPI power-off under TCG costs seconds and proves nothing,
        since nothing the guest writes on its way down is read again. QEMU
        exits at once and cleanly; SIGKILL if it does not within ``timeout``.
        """
        if not self.running:
            return
        with contextlib.suppress(OSError, ValueError):
            self.qmp("quit")
        if self.wait(timeout) is None:
            self.kill()

    def stop(self, timeout: float = 60.0) -> None:
        """ACPI power button first, then SIGTERM, then SIGKILL."""
        if not self.running:
            return
        with contextlib.suppress(OSError, ValueError):
            self.qmp("system_powerdown")
        if self.wait(timeout) is not None:
            return
        log.warning("guest did not power off within %.0fs; killing QEMU", timeout)
        self.proc.terminate()
        if self.wait(10) is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def start_vm(config: MachineConfig, *, stop_timeout: float = 60.0) -> Iterator[Machine]:
    """Start QEMU and guarantee it is gone when the block ends, whatever happens
    (exceptions, Ctrl-C, SIGTERM from a CI runner), and with it the machine's
    private folder: QMP socket, UEFI variable store, software TPM and its state."""
    private = Path(tempfile.mkdtemp(prefix="goldsmith-qmp-"))
    try:
        with contextlib.ExitStack() as stack:
            if config.qmp_socket is None:
                config = dataclasses.replace(config, qmp_socket=private / "qmp.sock")
            config = _with_firmware(config, private)
            if config.tpm and config.tpm_socket is None:
                socket_path = stack.enter_context(fw.start_swtpm(private))
                config = dataclasses.replace(config, tpm_socket=socket_path)
            machine = stack.enter_context(_run_machine(config, stop_timeout))
            yield machine
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _with_firmware(config: MachineConfig, private: Path) -> MachineConfig:
    """OVMF's code as installed, and a fresh copy of its variable store for
    this machine alone: a boot never sees what an earlier one wrote there,
    as a deployer's first boot would not."""
    if not config.firmware.is_uefi:
        return config
    files = fw.ovmf_files(config.firmware)
    code = config.firmware_code or files.code
    store = config.firmware_vars
    if store is None:
        store = private / "OVMF_VARS.fd"
        shutil.copyfile(files.vars_template, store)
        store.chmod(0o600)
    return dataclasses.replace(config, firmware_code=code, firmware_vars=store)


def _wait_for_start(proc: subprocess.Popen[bytes], qmp_socket: Path | None) -> None:
    """Until QEMU listens on its QMP socket (it creates it once the whole
    command line is accepted) or exits; a loaded host may take seconds."""
    time.sleep(0.3)
    deadline = time.monotonic() + 15
    while (
        qmp_socket is not None
        and not qmp_socket.exists()
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)


@contextlib.contextmanager
def _run_machine(config: MachineConfig, stop_timeout: float) -> Iterator[Machine]:
    cmd = build_command(config)
    cmd[0] = find_program(cmd[0])
    log.debug("+ %s", shlex.join(cmd))
    config.serial_log.touch()
    stderr_log = config.serial_log.with_suffix(".qemu-stderr")
    with open(stderr_log, "wb") as err:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=build_environment()
        )
    machine = Machine(config, proc)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # Signal handlers can only be set from the main thread.
    in_main = threading.current_thread() is threading.main_thread()
    interrupted = False
    try:
        if in_main:
            signal.signal(signal.SIGTERM, on_sigterm)
        _wait_for_start(proc, config.qmp_socket)
        if proc.poll() is not None:
            raise GuestError(
                f"QEMU exited at start with code {proc.returncode}: "
                + stderr_log.read_text(errors="replace").strip()[-500:]
            )
        yield machine
    except (KeyboardInterrupt, SystemExit):
        # Ctrl-C or SIGTERM: the user wants goldsmith gone now, and whatever
        # the guest was doing is discarded anyway; no graceful power-off.
        interrupted = True
        raise
    finally:
        try:
            if interrupted:
                machine.kill()
            else:
                machine.stop(stop_timeout)
        finally:
            if machine.running:
                proc.kill()
                proc.wait()
            if in_main:
                signal.signal(signal.SIGTERM, previous)
