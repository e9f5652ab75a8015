"""Base images: a local file, a download pinned by its digest, or a Debian
root file system bootstrapped from a mirror into a disk that boots like a
cloud image, from BIOS or from UEFI (with Secure Boot through Debian's signed
shim, GRUB and kernel). Every base lands in the digest-addressed cache."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from builder import qemu
from builder.cache import (
    CacheEntryError,
    cache_root,
    digest_json,
    fetch_entry,
    hash_file,
    locked,
    new_entry,
    share_entry,
)
from builder.errors import BuildError, InputError, ToolError
from builder.firmware import Firmware, require_program
from builder.log import complete_step, log
from builder.proxy import ProxyValue
from builder.run import run
from builder.spec import DebootstrapBase, FileBase, TemplateSpec, UrlBase
from hardening.strictdata import DataError, escape, load_json_file, loads_json

# Bumped whenever the debootstrap recipe below changes what it produces, so
# cached bases made by an older recipe are not reused.
RECIPE_VERSION = 2
# What a base shares through a registry cache (GOLDSMITH_CACHE=oci://...): the
# disk, the kernel and initrd the accelerator probe and first boot use, and
# the record of its inputs and digest. Not the first boot's serial log.
SHARED_BASE_FILES = ("base.qcow2", "vmlinuz", "initrd.img", "meta.json")
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
# A download that grows past this is no disk image we would accept: stop it
# before it fills the cache's disk (the digest pin would refuse it anyway).
MAX_DOWNLOAD = 64 << 30
HTTP_TIMEOUT = 60
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

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


@dataclasses.dataclass(frozen=True)
class BaseImage:
    path: Path
    format: str  # "qcow2" | "raw"
    sha256: str
    source: str  # "debootstrap" | "file" | "url"
    name: str
    uri: str
    inputs: dict[str, Any]
    kernel: Path | None = None  # a kernel from this base, for the accelerator probe

    def record(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "uri": self.uri,
            "digest": {"sha256": self.sha256},
            "format": self.format,
            "inputs": self.inputs,
        }


def prepare_base(spec: TemplateSpec, proxy: ProxyValue | None = None) -> BaseImage:
    """The spec's base image, from the cache when it holds it. ``proxy`` is
    the apt proxy a bootstrap downloads through (never part of the cache key:
    the same packages come through any proxy, and apt checks their signatures)."""
    if isinstance(spec.base, DebootstrapBase):
        return bootstrap_base(spec.base, proxy)
    if isinstance(spec.base, UrlBase):
        return download_base(spec.base, spec.path)
    return file_base(spec.base, spec.path)


def image_format(path: Path) -> str:
    info = qemu_img_info(path)
    backing = info.get("backing-filename")
    if backing:
        # The base must be self-contained: its digest has to cover every byte the guest reads.
        shown = escape(str(backing))
        raise BuildError(f"{path}: base image has a backing file ({shown})")
    fmt = info.get("format")
    if fmt not in ("qcow2", "raw"):
        shown = escape(str(fmt))
        raise BuildError(f"{path}: base image format {shown!r} is not supported (qcow2 or raw)")
    return str(fmt)


def qemu_img_info(path: Path) -> dict[str, Any]:
    """``qemu-img info`` of an image, read strictly: the image header (backing
    file name, format-specific data) is the image author's text."""
    out = run(["qemu-img", "info", "--output=json", qemu.file_arg(path)]).stdout
    try:
        info = loads_json(out)
    except DataError as exc:
        raise BuildError(f"{path}: qemu-img info gave no readable answer ({exc})") from None
    if not isinstance(info, dict):
        raise BuildError(f"{path}: qemu-img info gave no JSON object")
    return info


def open_url(url: str, timeout: float = HTTP_TIMEOUT) -> Any:
    """urlopen for goldsmith's downloads: redirects only to http or https
    (urllib alone would follow one to ftp://)."""
    return _OPENER.open(url, timeout=timeout)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not newurl.lower().startswith(("http://", "https://")):
            raise urllib.error.HTTPError(
                newurl, code, "redirect to a scheme other than http or https", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def find_cached_kernel() -> Path | None:
    """Any kernel a debootstrap base left in the cache (for the accelerator probe)."""
    kernels = sorted((cache_root() / "bases").glob("*/vmlinuz"))
    return kernels[-1] if kernels else None


# -- file and url ------------------------------------------------------------


def file_base(base: FileBase, spec_path: Path) -> BaseImage:
    with complete_step(f"Checking base image {base.path}"):
        digest = hash_file(base.path)["sha256"]
        if base.sha256 and digest != base.sha256:
            raise InputError(
                spec_path,
                "base.file.sha256",
                f"{base.path} has sha256 {digest}, the spec pins {base.sha256}",
            )
        return BaseImage(
            path=base.path,
            format=image_format(base.path),
            sha256=digest,
            source="file",
            name=base.path.name,
            uri=base.path.as_uri(),
            inputs={"path": str(base.path)},
            kernel=find_cached_kernel(),
        )


def download_base(base: UrlBase, spec_path: Path) -> BaseImage:
    target = cache_root() / "downloads" / base.sha256
    image = target / "image"
    with locked(target.with_suffix(".lock")):
        if not image.exists():
            with complete_step(f"Downloading {base.url}"), new_entry(target) as tmp:
                _download(base.url, tmp / "image")
                digest = hash_file(tmp / "image")["sha256"]
                if digest != base.sha256:
                    raise InputError(
                        spec_path,
                        "base.url.sha256",
                        f"{base.url} has sha256 {digest}, the spec pins {base.sha256}",
                    )
        else:
            log.info("Base image %s found in the cache", base.sha256[:12])
    return BaseImage(
        path=image,
        format=image_format(image),
        sha256=base.sha256,
        source="url",
        name=base.url.rsplit("/", 1)[-1],
        uri=base.url,
        inputs={"url": base.url},
        kernel=find_cached_kernel(),
    )


def _download(url: str, dest: Path) -> None:
    try:
        with open_url(url) as resp, open(dest, "wb") as out:
            length = str(resp.headers.get("Content-Length") or "")
            total = int(length) if length.isascii() and length.isdigit() else 0
            done, last = 0, 0.0
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if done > MAX_DOWNLOAD:
                    raise BuildError(f"downloading {url}: more than {MAX_DOWNLOAD >> 30} GiB")
                if time.monotonic() - last > 2:
                    last = time.monotonic()
                    pct = f" ({100 * done // total}%)" if total else ""
                    print(f"  {done >> 20} MiB{pct}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        raise BuildError(f"downloading {url} failed: {exc}") from exc


# -- debootstrap -------------------------------------------------------------

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


def bootstrap_inputs(base: DebootstrapBase) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "recipe": RECIPE_VERSION,
        "suite": base.suite,
        "mirror": base.mirror,
        "security_mirror": base.security_mirror,
        "packages": sorted({*base_packages(base.firmware), *base.packages}),
        "architecture": "amd64",
        "disk_size": BASE_DISK_SIZE,
    }
    # Keys added only where they differ from what every earlier base was,
    # so a BIOS bookworm base keeps its cache entry and its build keys.
    if base.firmware is not Firmware.bios:
        inputs["firmware"] = str(base.firmware)
        inputs["kernel_cmdline"] = UEFI_CMDLINE
    if uses_deb822(base.suite):
        inputs["sources"] = "deb822"
    return inputs


def bootstrap_base(base: DebootstrapBase, proxy: ProxyValue | None = None) -> BaseImage:
    inputs = bootstrap_inputs(base)
    key = digest_json(inputs)
    entry = cache_root() / "bases" / key
    with locked(entry.with_suffix(".lock")):
        if entry.exists():
            log.info("Base image debootstrap:%s found in the cache (%s)", base.suite, key[:12])
        elif not fetch_entry(entry, "base", SHARED_BASE_FILES, _shared_base_check(inputs)):
            with (
                complete_step(f"Bootstrapping Debian {base.suite} from {base.mirror}"),
                new_entry(entry) as tmp,
            ):
                _bootstrap_into(tmp, base, inputs, proxy)
            share_entry(entry, "base", SHARED_BASE_FILES)
    return BaseImage(
        path=entry / "base.qcow2",
        format="qcow2",
        sha256=_cached_digest(entry),
        source="debootstrap",
        name=f"debian-{base.suite}-debootstrap",
        uri=base.mirror,
        inputs={**inputs, "key": key},
        kernel=entry / "vmlinuz",
    )


def _shared_base_check(inputs: dict[str, Any]) -> Callable[[Path, Mapping[str, str]], None]:
    """What a base from the registry cache must be, beyond each file's digest:
    made from these inputs, and its meta.json naming the disk it came with."""

    def check(folder: Path, digests: Mapping[str, str]) -> None:
        try:
            meta = load_json_file(folder / "meta.json")
        except (OSError, DataError) as exc:
            raise CacheEntryError(f"its meta.json cannot be read ({exc})") from None
        if not isinstance(meta, dict) or meta.get("inputs") != inputs:
            raise CacheEntryError("its meta.json names other inputs than its key's")
        if meta.get("sha256") != digests["base.qcow2"]:
            raise CacheEntryError("its meta.json names another disk than base.qcow2")

    return check


def _cached_digest(entry: Path) -> str:
    """The digest meta.json records for a cached base, read strictly."""
    meta_path = entry / "meta.json"
    try:
        meta = load_json_file(meta_path)
    except (OSError, DataError) as exc:
        raise BuildError(
            f"{meta_path}: the cached base's record cannot be read ({exc})",
            hint=f"remove {entry} to bootstrap the base again",
        ) from None
    digest = meta.get("sha256") if isinstance(meta, dict) else None
    if not isinstance(digest, str) or _SHA256_HEX.fullmatch(digest) is None:
        raise BuildError(
            f"{meta_path}: the cached base's record has no sha256",
            hint=f"remove {entry} to bootstrap the base again",
        )
    return digest


def _bootstrap_into(
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
                *(qemu.file_arg(raw), qemu.file_arg(work / "base.qcow2")),
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
    accel = qemu.probe_accelerator(work / "vmlinuz")
    config = qemu.MachineConfig(
        disk=raw,
        disk_format="raw",
        accelerator=accel,
        memory=1024,
        cpus=2,
        serial_log=serial,
        kernel_boot=qemu.KernelBoot(
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
