"""Boot an artifact the way a deployer would: firmware boot of a throwaway
overlay, a fresh seed with a one-run validator account and a pinned host key.

The firmware is the artifact's (build.json): a UEFI template boots OVMF with a
fresh variable store, a Secure Boot one the SMM build with Microsoft's keys
enrolled, and a template built with a TPM gets a fresh software TPM, as a
deployer's platform would provide them."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

import paramiko

from builder import accel_probe, qemu, qemu_command
from builder.base import find_cached_kernel
from builder.firmware import Firmware
from builder.run import run
from builder.seed import GuestAccess, new_access, render_seed_files, write_seed_iso
from builder.ssh import wait_for_machine

VALIDATOR_USER = "gsvalidate"


@dataclasses.dataclass
class BootedGuest:
    machine: qemu.Machine
    client: paramiko.SSHClient
    access: GuestAccess
    accelerator: qemu_command.Accelerator
    workdir: Path

    @property
    def instance_id(self) -> str:
        return f"goldsmith-{self.access.run_id}"


@contextlib.contextmanager
def boot_artifact(
    disk: Path,
    *,
    memory: int = 2048,
    cpus: int = 2,
    boot_timeout: float = 900,
    serial_log: Path | None = None,
    access: GuestAccess | None = None,
    firmware: Firmware = Firmware.bios,
    tpm: bool = False,
) -> Iterator[BootedGuest]:
    """The overlay takes every write; QEMU opens ``disk`` read-only as its backing file."""
    access = access or new_access(VALIDATOR_USER, "validate")
    accel = accel_probe.probe_accelerator(find_cached_kernel())
    with tempfile.TemporaryDirectory(prefix="goldsmith-validate-") as tmp:
        work = Path(tmp)
        overlay = work / "overlay.qcow2"
        run(
            [
                *("qemu-img", "create", "-q", "-f", "qcow2"),
                *("-b", disk.resolve(), "-F", "qcow2", overlay),
            ]
        )
        seed = work / "seed.iso"
        write_seed_iso(seed, render_seed_files(access, hostname="goldsmith-validate"))
        config = qemu_command.MachineConfig(
            disk=overlay,
            accelerator=accel,
            memory=memory,
            cpus=cpus,
            serial_log=serial_log or work / "serial.log",
            seed=seed,
            ssh_port=qemu_command.free_port(),
            firmware=firmware,
            tpm=tpm,
        )
        with qemu.start_vm(config, stop_timeout=60) as vm:
            client = wait_for_machine(vm, access, timeout=boot_timeout)
            try:
                yield BootedGuest(vm, client, access, accel, work)
            finally:
                client.close()
                # The overlay is deleted with this folder: no power-off to wait for.
                vm.discard()
