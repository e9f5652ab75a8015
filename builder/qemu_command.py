"""QEMU's command line: the machine a caller asks for (``MachineConfig``) and
the argv that makes it (``build_command``), with the quoting every path in it
goes through. Nothing here starts QEMU but ``qemu_version``; ``builder.qemu``
runs the machine and ``builder.accel_probe`` chooses its accelerator."""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import socket
from pathlib import Path

from builder.firmware import Firmware
from builder.run import run

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


def path_option(path: Path | str) -> str:
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

    Every path inside an option list goes through ``path_option`` (absolute,
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
        f"file,id=serial0,path={path_option(config.serial_log)}",
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
                f"if=pflash,format=raw,unit=0,readonly=on,file={path_option(config.firmware_code)}",
            ),
            *("-drive", f"if=pflash,format=raw,unit=1,file={path_option(config.firmware_vars)}"),
        ]
    if config.firmware is Firmware.uefi_secureboot:
        cmd += [
            # The flash answers writes only from SMM.
            *("-global", "driver=cfi.pflash01,property=secure,value=on"),
            # OVMF with SMM does not support S3 sleep.
            *("-global", "ICH9-LPC.disable_s3=1"),
        ]
    drive = (
        f"file={path_option(config.disk)},if={'none,id=disk0' if uefi else 'virtio'},"
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
            *("-chardev", f"socket,id=chrtpm,path={path_option(config.tpm_socket)}"),
            *("-tpmdev", "emulator,id=tpm0,chardev=chrtpm"),
            # TIS works on both machine types and with SeaBIOS as with OVMF.
            *("-device", "tpm-tis,tpmdev=tpm0"),
        ]
    if config.qmp_socket is not None:
        cmd += [
            *(
                "-chardev",
                f"socket,id=qmp0,path={path_option(config.qmp_socket)},server=on,wait=off",
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
            f"file={path_option(config.seed)},if=virtio,format=raw,readonly=on,media=cdrom",
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
