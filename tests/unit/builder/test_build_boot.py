"""How the build VM boots: the base's kernel directly only where that changes
nothing in the template, and the QEMU arguments that follow from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_firmware_spec import spec_file

from builder.base import BaseImage
from builder.build import build_vm_kernel
from builder.qemu_command import Accelerator, MachineConfig, build_command
from builder.spec import TemplateSpec, load_spec


def spec(tmp_path: Path, extra: str = "") -> TemplateSpec:
    return load_spec(spec_file(tmp_path, extra))


def base(tmp_path: Path, source: str = "debootstrap", *, initrd: bool = True) -> BaseImage:
    """A base as builder.base makes it: a bootstrapped one names its own
    kernel and initrd; a file or URL base has only some cached kernel, for
    the accelerator probe."""
    entry = tmp_path / "entry"
    entry.mkdir(exist_ok=True)
    (entry / "vmlinuz").write_bytes(b"kernel")
    if initrd:
        (entry / "initrd.img").write_bytes(b"initrd")
    own = (entry / "vmlinuz", entry / "initrd.img") if source == "debootstrap" else None
    return BaseImage(
        path=entry / "base.qcow2",
        format="qcow2",
        sha256="0" * 64,
        source=source,
        name="b",
        uri="u",
        inputs={},
        kernel=entry / "vmlinuz",
        own_kernel=own,
    )


def test_bios_bootstrapped_base_boots_its_own_kernel_with_grubs_command_line(
    tmp_path: Path,
) -> None:
    boot = build_vm_kernel(spec(tmp_path), base(tmp_path))
    assert boot is not None
    assert boot.kernel == tmp_path / "entry" / "vmlinuz"
    assert boot.initrd == tmp_path / "entry" / "initrd.img"
    # What the base's GRUB passes (bootstrap's GRUB_CMDLINE_LINUX, Debian's "quiet").
    assert boot.append == "root=/dev/vda1 ro console=tty0 console=ttyS0,115200n8 quiet"


@pytest.mark.parametrize("firmware", ["uefi", "uefi-secureboot"])
def test_uefi_builds_boot_through_their_firmware(tmp_path: Path, firmware: str) -> None:
    assert build_vm_kernel(spec(tmp_path, f"firmware: {firmware}\n"), base(tmp_path)) is None


@pytest.mark.parametrize("source", ["file", "url"])
def test_a_base_goldsmith_did_not_bootstrap_boots_from_firmware(
    tmp_path: Path, source: str
) -> None:
    assert build_vm_kernel(spec(tmp_path), base(tmp_path, source)) is None


def test_a_reboot_step_keeps_the_firmware_boot(tmp_path: Path) -> None:
    # A reboot must come back through GRUB to the kernel the upgrade installed.
    with_reboot = spec(tmp_path, "provision:\n  - reboot: {}\n")
    assert build_vm_kernel(with_reboot, base(tmp_path)) is None


def test_a_cache_entry_without_its_initrd_boots_from_firmware(tmp_path: Path) -> None:
    assert build_vm_kernel(spec(tmp_path), base(tmp_path, initrd=False)) is None


@pytest.mark.parametrize("accelerator", list(Accelerator))
def test_qemu_arguments_of_a_direct_build_boot(tmp_path: Path, accelerator: Accelerator) -> None:
    boot = build_vm_kernel(spec(tmp_path), base(tmp_path))
    cmd = build_command(
        MachineConfig(
            disk=tmp_path / "overlay.qcow2",
            accelerator=accelerator,
            memory=2048,
            cpus=2,
            serial_log=tmp_path / "serial.log",
            seed=tmp_path / "seed.iso",
            ssh_port=2222,
            kernel_boot=boot,
        )
    )
    assert cmd[cmd.index("-kernel") + 1] == str(tmp_path / "entry" / "vmlinuz")
    assert cmd[cmd.index("-initrd") + 1] == str(tmp_path / "entry" / "initrd.img")
    assert cmd[cmd.index("-append") + 1].startswith("root=/dev/vda1 ro ")
    assert cmd[cmd.index("-accel") + 1] == str(accelerator)
    assert cmd[cmd.index("-cpu") + 1] == ("host" if accelerator is Accelerator.kvm else "max")
    # The overlay is the first virtio disk (vda), the seed after it.
    drives = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-drive"]
    assert "overlay.qcow2" in drives[0] and "if=virtio" in drives[0]
    assert "seed.iso" in drives[1]
    # A guest that reboots on its own ends the VM rather than restarting the base's kernel.
    assert "-no-reboot" in cmd
