"""Making a base from a Debian mirror, without loop devices or mounts:
mmdebstrap fills a folder, ``mkfs.ext4 -d`` turns it into a file system
image, ``sfdisk`` partitions a plain file (MBR for BIOS; GPT with an EFI
system partition made by ``mkfs.vfat -C`` for UEFI), and GRUB is installed
from inside the guest on one direct-kernel first boot. The recipe's inputs
and the cache entry it fills are :mod:`builder.base`'s."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from builder import accel_probe, qemu, qemu_command
from builder.cache import hash_file
from builder.errors import BuildError, ToolError
from builder.firmware import Firmware, require_program
from builder.log import complete_step
from builder.proxy import ProxyValue
from builder.run import run
from builder.spec import DebootstrapBase

# Bumped whenever the debootstrap recipe below changes what it produces, so
# cached bases made by an older recipe are not reused.
RECIPE_VERSION = 3

BASE_DISK_SIZE = 2 << 30
PARTITION_OFFSET = 1 << 20
# UEFI disks (GPT): the EFI system partition first, the root file system
# after it and last, so cloud-init's growpart can grow it into the disk.
ESP_SIZE = 126 << 20
UEFI_ROOT_OFFSET = 128 << 20
# GPT keeps a copy of its table in the disk's last 33 sectors.
GPT_BACKUP = 1 << 20
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_DATA_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

# The BIOS base's packages; UEFI bases swap grub-pc for BOOT_PACKAGES.
BASE_PACKAGES = (
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "linux-image-cloud-amd64",
    "grub-pc",
    "cloud-init",
    "cloud-guest-utils",
    "openssh-server",
    "sudo",
    "systemd-resolved",
    # The machine's own name resolves without asking DNS (see hosts_lookup).
    "libnss-myhostname",
    "ca-certificates",
    "e2fsprogs",
    "python3",
    "netbase",
    "iproute2",
    "procps",
    "less",
)


# The boot loader each firmware needs. Secure Boot takes Debian's signed
# chain: shim (signed by Microsoft's UEFI CA, which OVMF's enrolled store and
# real platforms trust) loads GRUB signed by Debian, which loads the kernel
# (linux-image-*-cloud-amd64 is already signed). efibootmgr: GRUB's
# maintainer scripts call it when they reinstall on an upgrade.
BOOT_PACKAGES = {
    Firmware.bios: ("grub-pc",),
    Firmware.uefi: ("grub-efi-amd64", "efibootmgr"),
    Firmware.uefi_secureboot: (
        "grub-efi-amd64",
        "grub-efi-amd64-signed",
        "shim-signed",
        "efibootmgr",
    ),
}

# Releases whose apt reads one-line sources.list; later ones get deb822
# (/etc/apt/sources.list.d/debian.sources), as their installer writes it.
# An unknown suite name is taken to be a newer release.
ONE_LINE_SOURCES = frozenset({"buster", "bullseye", "bookworm", "oldoldstable", "oldstable"})


def uses_deb822(suite: str) -> bool:
    return suite not in ONE_LINE_SOURCES


def base_packages(firmware: Firmware) -> tuple[str, ...]:
    common = tuple(p for p in BASE_PACKAGES if p != "grub-pc")
    return (*common, *BOOT_PACKAGES[firmware])


_FIRSTBOOT = """#!/bin/sh
# Runs once as PID 1 on the base image's only direct-kernel boot: install the
# boot loader from inside the guest, so the host needs no loop devices or mounts.
exec > /dev/ttyS0 2>&1
fail() { echo "goldsmith-firstboot: FAILED"; sync; echo o > /proc/sysrq-trigger; sleep 60; }
trap fail EXIT
set -eux
mount -o remount,rw /
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
@INSTALL@
update-grub
@AFTER@
rm -f /usr/local/sbin/goldsmith-firstboot
sync
trap - EXIT
echo "goldsmith-firstboot: done"
mount -o remount,ro / || true
echo o > /proc/sysrq-trigger
sleep 60
"""

_INSTALL_BIOS = "grub-install --target=i386-pc /dev/vda"

# UEFI: GRUB goes to the EFI system partition at both Debian's path and the
# removable-media path (/EFI/BOOT/BOOTX64.EFI, shim under Secure Boot), and
# NVRAM is never written: a fresh variable store, as a deployer's platform
# has, finds the removable path by itself. debconf keeps GRUB's upgrades
# doing the same. The first boot runs under BIOS, so there are no EFI
# variables to write anyway.
_INSTALL_UEFI = """mkdir -p /boot/efi
modprobe vfat || true
mount -t vfat -o umask=0077 /dev/vda1 /boot/efi
debconf-set-selections <<'EOF' || echo "goldsmith-firstboot: debconf not updated"
grub-efi-amd64 grub2/force_efi_extra_removable boolean true
grub-efi-amd64 grub2/update_nvram boolean false
EOF
grub-install --target=x86_64-efi --efi-directory=/boot/efi --no-nvram \\
  --force-extra-removable @SECUREBOOT@
test -s /boot/efi/EFI/BOOT/BOOTX64.EFI
find /boot/efi -type f | sort"""

_AFTER_UEFI = "umount /boot/efi"

BIOS_CMDLINE = "console=tty0 console=ttyS0,115200n8"
# no_timer_check, as RHEL's and Fedora's cloud images have: the kernel's check
# that the IO-APIC timer ticks is a timing test, and an emulated q35 machine on
# a busy host fails it and panics ("IO-APIC + timer doesn't work!"), seen
# here under TCG. Kept to UEFI bases so every cached BIOS base stays valid.
UEFI_CMDLINE = BIOS_CMDLINE + " no_timer_check"

_GRUB_DEFAULTS = """# goldsmith: serial console and a short menu, as cloud images have.
GRUB_TIMEOUT=1
GRUB_CMDLINE_LINUX="@CMDLINE@"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_DISABLE_OS_PROBER=true
"""

# minbase has no locales package: C.UTF-8 is the one locale always present.
_CLOUD_CFG = """# goldsmith base image defaults
locale: C.UTF-8
"""

_NETWORK = """# goldsmith: DHCP on the first NIC when cloud-init has not configured one.
[Match]
Name=en* eth*

[Network]
DHCP=yes
"""


def firstboot_script(firmware: Firmware) -> str:
    if firmware is Firmware.bios:
        return _FIRSTBOOT.replace("@INSTALL@", _INSTALL_BIOS).replace("@AFTER@\n", "")
    flag = "--uefi-secure-boot" if firmware is Firmware.uefi_secureboot else "--no-uefi-secure-boot"
    install = _INSTALL_UEFI.replace("@SECUREBOOT@", flag)
    return _FIRSTBOOT.replace("@INSTALL@", install).replace("@AFTER@", _AFTER_UEFI)


def bootstrap_into(
    work: Path, base: DebootstrapBase, inputs: dict[str, Any], proxy: ProxyValue | None = None
) -> None:
    tree = work / "tree"
    # Every spec value reaches mmdebstrap as one argv element (no shell), and
    # the spec loader has refused any whitespace or control character in the
    # mirror and suite, so each sources line below is exactly one line of
    # exactly four words.
    with complete_step("Running mmdebstrap"), _masked(proxy):
        run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--components=main",
                "--include=" + ",".join(inputs["packages"]),
                '--customize-hook=chroot "$1" systemctl enable systemd-networkd',
                base.suite,
                tree,
                f"deb {base.mirror} {base.suite} main",
                f"deb {base.mirror} {base.suite}-updates main",
                f"deb {base.security_mirror} {base.suite}-security main",
            ],
            timeout=3600,
            # In the environment, where apt finds it: an --aptopt would be
            # written into the tree (/etc/apt/apt.conf.d/99mmdebstrap).
            env=proxy.environment() if proxy else None,
        )
    root_uuid = str(uuid.uuid4())
    esp_serial = secrets.token_hex(4).upper() if base.firmware.is_uefi else None
    _customize_tree(tree, root_uuid, base, esp_serial)
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    initrds = sorted((tree / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise BuildError("the bootstrapped tree has no kernel or initrd in /boot")
    shutil.copy2(kernels[-1], work / "vmlinuz")
    shutil.copy2(initrds[-1], work / "initrd.img")
    raw = work / "base.raw"
    with complete_step("Making the root file system and partitioned disk"):
        layout = disk_layout(base.firmware)
        part = work / "root.ext4"
        size = layout.root_size
        run(["mkfs.ext4", "-q", "-d", tree, "-U", root_uuid, "-L", "root", part, str(size >> 10)])
        shutil.rmtree(tree)
        with open(raw, "wb") as f:
            f.truncate(BASE_DISK_SIZE)
        run(["sfdisk", "--quiet", raw], input=layout.sfdisk.encode())
        _copy_sparse(part, raw, layout.root_offset)
        part.unlink()
        if esp_serial is not None:
            esp = work / "esp.vfat"
            make_esp(esp, esp_serial)
            _copy_sparse(esp, raw, PARTITION_OFFSET)
            esp.unlink()
    with complete_step("Installing the boot loader from inside the guest"):
        _first_boot(work, raw, root_uuid)
    with complete_step("Converting the base to qcow2"):
        run(
            [
                *("qemu-img", "convert", "-f", "raw", "-O", "qcow2"),
                *(qemu_command.file_arg(raw), qemu_command.file_arg(work / "base.qcow2")),
            ]
        )
        raw.unlink()
    digest = hash_file(work / "base.qcow2")["sha256"]
    (work / "meta.json").write_text(json.dumps({"sha256": digest, "inputs": inputs}, indent=2))


@contextlib.contextmanager
def _masked(proxy: ProxyValue | None) -> Iterator[None]:
    """A failing mmdebstrap's output (kept in the error) with the proxy's URL
    and password masked: the error reaches the terminal and build.log."""
    try:
        yield
    except ToolError as exc:
        if proxy is None:
            raise
        text = exc.message
        for secret in sorted(proxy.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        raise ToolError(text) from None


@dataclasses.dataclass(frozen=True)
class DiskLayout:
    sfdisk: str  # sfdisk's script for the partition table
    root_offset: int
    root_size: int  # the ext4 image's size; its partition may be a little larger


def disk_layout(firmware: Firmware) -> DiskLayout:
    """BIOS: MBR, one bootable root partition (GRUB sits in the gap before
    it). UEFI: GPT, an EFI system partition, then the root partition."""
    if firmware is Firmware.bios:
        return DiskLayout(
            sfdisk="label: dos\nstart=2048, type=83, bootable\n",
            root_offset=PARTITION_OFFSET,
            root_size=BASE_DISK_SIZE - PARTITION_OFFSET,
        )
    sector = 512
    return DiskLayout(
        sfdisk=(
            "label: gpt\n"
            f"start={PARTITION_OFFSET // sector}, size={ESP_SIZE // sector}, "
            f'type={ESP_TYPE}, name="EFI system"\n'
            f'start={UEFI_ROOT_OFFSET // sector}, type={LINUX_DATA_TYPE}, name="root"\n'
        ),
        root_offset=UEFI_ROOT_OFFSET,
        root_size=BASE_DISK_SIZE - UEFI_ROOT_OFFSET - GPT_BACKUP,
    )


def make_esp(path: Path, serial: str) -> None:
    """An empty FAT32 file system in a plain file, later copied into the
    partition's place: no loop device, no mount. GRUB fills it from inside
    the guest."""
    require_program("mkfs.vfat", "dosfstools")
    run(["mkfs.vfat", "-F", "32", "-n", "EFI", "-i", serial, "-C", path, str(ESP_SIZE >> 10)])


def _write_sources(etc: Path, base: DebootstrapBase) -> None:
    """deb822 sources for releases whose installer writes them (trixie on):
    one file, the archive keyring named, the same three suites mmdebstrap
    was given. The spec loader keeps mirror and suite to single words."""
    (etc / "apt" / "sources.list").unlink(missing_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    stanzas = [
        (base.mirror, f"{base.suite} {base.suite}-updates"),
        (base.security_mirror, f"{base.suite}-security"),
    ]
    text = "\n".join(
        f"Types: deb\nURIs: {uri}\nSuites: {suites}\nComponents: main\nSigned-By: {keyring}\n"
        for uri, suites in stanzas
    )
    (etc / "apt" / "sources.list.d" / "debian.sources").write_text(text)


def hosts_lookup(nsswitch: str) -> str:
    """nsswitch.conf with ``myhostname`` right after ``files`` on its hosts line.

    sudo looks up the machine's own name on every call. Debian 13's
    systemd-resolved no longer answers a single-label name from its own
    records: the lookup goes to LLMNR, about 8 s per sudo in the build VM
    (every step goldsmith runs), and fails outright once hardening turns
    LLMNR off. nss-myhostname answers it from the kernel's hostname, before
    DNS is asked, as the systemd project recommends."""
    lines = nsswitch.splitlines()
    for index, line in enumerate(lines):
        database, _, rest = line.partition(":")
        if database.strip() != "hosts":
            continue
        sources = [word for word in rest.split() if word != "myhostname"]
        at = sources.index("files") + 1 if "files" in sources else 0
        sources.insert(at, "myhostname")
        lines[index] = f"hosts:{' ' * 10}{' '.join(sources)}"
        return "\n".join(lines) + "\n"
    head = nsswitch.rstrip("\n") + "\n" if nsswitch.strip() else ""
    return head + "hosts:          files myhostname dns\n"


def _customize_tree(
    tree: Path,
    root_uuid: str,
    base: DebootstrapBase | None = None,
    esp_serial: str | None = None,
) -> None:
    etc = tree / "etc"
    fstab = f"UUID={root_uuid} / ext4 rw,discard,errors=remount-ro 0 1\n"
    if esp_serial is not None:
        # umask: the ESP holds the boot chain; only root reads it.
        fstab += f"UUID={esp_serial[:4]}-{esp_serial[4:]} /boot/efi vfat umask=0077 0 0\n"
    (etc / "fstab").write_text(fstab)
    if base is not None and uses_deb822(base.suite):
        _write_sources(etc, base)
    (etc / "hostname").write_text("debian\n")
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    nsswitch = etc / "nsswitch.conf"
    nsswitch.write_text(hosts_lookup(nsswitch.read_text() if nsswitch.exists() else ""))
    (etc / "default" / "grub.d").mkdir(parents=True, exist_ok=True)
    uefi = base is not None and base.firmware.is_uefi
    cmdline = UEFI_CMDLINE if uefi else BIOS_CMDLINE
    (etc / "default" / "grub.d" / "10-goldsmith.cfg").write_text(
        _GRUB_DEFAULTS.replace("@CMDLINE@", cmdline)
    )
    (etc / "systemd" / "network" / "90-goldsmith-dhcp.network").write_text(_NETWORK)
    (etc / "cloud" / "cloud.cfg.d" / "90-goldsmith.cfg").write_text(_CLOUD_CFG)
    (etc / "default" / "locale").write_text("LANG=C.UTF-8\n")
    # Every instance must make its own identity: no machine-id, no host keys.
    (etc / "machine-id").write_text("")
    (tree / "var" / "lib" / "dbus" / "machine-id").unlink(missing_ok=True)
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    firstboot = tree / "usr" / "local" / "sbin" / "goldsmith-firstboot"
    firstboot.write_text(firstboot_script(base.firmware if base is not None else Firmware.bios))
    firstboot.chmod(0o755)
    for cache in (tree / "var" / "cache" / "apt").glob("*.bin"):
        cache.unlink()
    shutil.rmtree(tree / "var" / "lib" / "apt" / "lists", ignore_errors=True)
    (tree / "var" / "lib" / "apt" / "lists" / "partial").mkdir(parents=True)


def _copy_sparse(src: Path, dst: Path, offset: int) -> None:
    """Copy src into dst at offset, skipping all-zero blocks (dst is sparse)."""
    block = 1 << 20
    zero = bytes(block)
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        pos = 0
        while chunk := fin.read(block):
            if chunk != zero[: len(chunk)]:
                fout.seek(offset + pos)
                fout.write(chunk)
            pos += len(chunk)


def _first_boot(work: Path, raw: Path, root_uuid: str) -> None:
    serial = work / "firstboot-serial.log"
    accel = accel_probe.probe_accelerator(work / "vmlinuz")
    config = qemu_command.MachineConfig(
        disk=raw,
        disk_format="raw",
        accelerator=accel,
        memory=1024,
        cpus=2,
        serial_log=serial,
        kernel_boot=qemu_command.KernelBoot(
            kernel=work / "vmlinuz",
            initrd=work / "initrd.img",
            append=(
                f"root=UUID={root_uuid} rw console=ttyS0 panic=-1 "
                "init=/usr/local/sbin/goldsmith-firstboot"
            ),
        ),
    )
    with qemu.start_vm(config, stop_timeout=5) as vm:
        code = vm.wait(600)
        if code is None:
            raise BuildError(
                "the base image's first boot did not finish within 600s",
                hint=f"serial console: {serial}\n" + vm.serial_tail(),
            )
    text = serial.read_text(errors="replace")
    if "goldsmith-firstboot: done" not in text:
        tail = "\n".join(text.splitlines()[-25:])
        raise BuildError(f"installing the boot loader in the base image failed:\n{tail}")
