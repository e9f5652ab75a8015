"""Base images: a local file, a download pinned by its digest, or a Debian
root file system bootstrapped from a mirror into a disk that boots like a
cloud image, from BIOS or from UEFI (with Secure Boot through Debian's signed
shim, GRUB and kernel). Every base lands in the digest-addressed cache.

This module holds the kinds of base, their identities and the cache lookup;
making a base from a mirror (mmdebstrap, the disk layout, the ESP and the
first boot that installs the boot loader) is :mod:`builder.bootstrap`'s."""

from __future__ import annotations

import dataclasses
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from builder import qemu_command
from builder.bootstrap import (
    BASE_DISK_SIZE,
    RECIPE_VERSION,
    UEFI_CMDLINE,
    base_packages,
    bootstrap_into,
    uses_deb822,
)
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
from builder.errors import BuildError, InputError
from builder.firmware import Firmware
from builder.log import complete_step, log
from builder.proxy import ProxyValue
from builder.run import run
from builder.spec import DebootstrapBase, FileBase, TemplateSpec, UrlBase
from hardening.strictdata import DataError, escape, load_json_file, loads_json

# What a base shares through a registry cache (GOLDSMITH_CACHE=oci://...): the
# disk, the kernel and initrd the accelerator probe and first boot use, and
# the record of its inputs and digest. Not the first boot's serial log.
SHARED_BASE_FILES = ("base.qcow2", "vmlinuz", "initrd.img", "meta.json")
# A download that grows past this is no disk image we would accept: stop it
# before it fills the cache's disk (the digest pin would refuse it anyway).
MAX_DOWNLOAD = 64 << 30
HTTP_TIMEOUT = 60
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


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
    # A bootstrapped base's own kernel and initrd (the files of its /boot),
    # which its build VM may boot directly; None for a file or URL base.
    own_kernel: tuple[Path, Path] | None = None

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
    out = run(["qemu-img", "info", "--output=json", qemu_command.file_arg(path)]).stdout
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
                bootstrap_into(tmp, base, inputs, proxy)
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
        own_kernel=(entry / "vmlinuz", entry / "initrd.img"),
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
