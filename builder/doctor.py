"""goldsmith doctor: what this host lacks, and how to fix it."""

from __future__ import annotations

import dataclasses
import os
import shutil

from builder import accel_probe, qemu_command
from builder.base import find_cached_kernel
from builder.run import PACKAGES, program_path


@dataclasses.dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str
    fix: str = ""


REQUIRED = ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4", "sfdisk", "ssh-keygen")
# Needed only by templates that ask for them: UEFI bases (mkfs.vfat), `tpm: true`.
OPTIONAL = ("openssl", "chromium", "mkfs.vfat", "swtpm")


def diagnose() -> list[Finding]:
    findings = []
    for program in (*REQUIRED, *OPTIONAL):
        path = shutil.which(program, path=program_path())
        package = PACKAGES.get(program, program)
        needed = "required" if program in REQUIRED else "optional"
        findings.append(
            Finding(
                program,
                path is not None or program in OPTIONAL,
                path or f"not found ({needed})",
                "" if path else f"apt-get install {package}",
            )
        )
    # UEFI and Secure Boot templates boot OVMF from Debian's package.
    from builder.firmware import OVMF_DIR

    ovmf = (OVMF_DIR / "OVMF_CODE_4M.secboot.fd").is_file()
    findings.append(
        Finding(
            "ovmf",
            True,
            str(OVMF_DIR) if ovmf else "not found (optional: firmware uefi, uefi-secureboot)",
            "" if ovmf else "apt-get install ovmf",
        )
    )
    if os.geteuid() != 0:
        findings.append(
            Finding(
                "root",
                False,
                "debootstrap bases are made as root",
                "run as root, or use a file/url base",
            )
        )
    if shutil.which("qemu-system-x86_64", path=program_path()):
        accel = accel_probe.probe_accelerator(find_cached_kernel())
        findings.append(
            Finding(
                "accelerator",
                accel is qemu_command.Accelerator.kvm,
                f"{accel}"
                + ("" if accel is qemu_command.Accelerator.kvm else " (slow software emulation)"),
                ""
                if accel is qemu_command.Accelerator.kvm
                else "enable virtualisation and give this user access to /dev/kvm (group kvm)"
                if not os.access("/dev/kvm", os.R_OK | os.W_OK)
                else "/dev/kvm is present but a guest kernel does not run under it "
                "(nested or paravirtual host); builds use TCG",
            )
        )
    return findings
