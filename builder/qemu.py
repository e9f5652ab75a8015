"""The one module that starts a machine in QEMU (the accelerator probe's
throwaway boots aside): the process of what ``builder.qemu_command``
describes, and its QMP. ``start_vm`` is a context manager; no QEMU outlives
it, nor its software TPM or its copy of the firmware's variable store."""

from __future__ import annotations

import contextlib
import dataclasses
import json
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
from builder.errors import GuestError
from builder.log import log
from builder.qemu_command import MachineConfig, build_command
from builder.run import build_environment, find_program


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
