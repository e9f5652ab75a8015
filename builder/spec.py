"""The template spec: one YAML file, read once into frozen dataclasses.

``load_spec`` is the only place that sees the raw YAML. Everything it returns
is typed and already checked, so later stages never meet a dict, a missing key
or a value of the wrong type. Every problem is an ``InputError`` naming the
file, the key path (``base.url.sha256``, ``vm.memory``, ``packages[2]``) and
what was expected.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from pathlib import Path
from typing import Any

from builder.errors import InputError
from builder.firmware import Firmware
from builder.formats import ALL_FORMATS, Compression, OutputFormat
from builder.provision import ENV_NAME, Step, parse_steps, steps_key
from builder.proxy import AptProxy
from builder.spec_section import Section
from builder.spec_values import (
    GIB,
    HOST_NAME,
    NAME,
    SUITE,
    TIB,
    VERSION,
    check_text,
    describe,
    parse_size,
    show,
)
from hardening.errors import suggest
from hardening.strictdata import DataError, loads_yaml, read_regular

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEFAULT_DISK_SIZE = 4 * GIB
MIN_DISK_SIZE = 1 * GIB
DEFAULT_MEMORY = 2048
MIN_MEMORY = 512
DEFAULT_CPUS = 2
DEFAULT_TIMEOUTS = {"boot": 900, "step": 3600, "shutdown": 120}
# Upper bounds: a spec is data from a repository, and a typo of three zeros
# must be an error here, not a QEMU that cannot start or a build that waits a year.
MAX_DISK_SIZE = 64 * TIB
MAX_MEMORY = 1024 * 1024  # MiB: 1 TiB
MAX_CPUS = 255  # the most QEMU's pc machine takes
MAX_TIMEOUT = 7 * 24 * 3600  # seconds


@dataclasses.dataclass(frozen=True)
class DebootstrapBase:
    """Build the root file system from a Debian mirror."""

    suite: str
    mirror: str
    security_mirror: str
    packages: tuple[str, ...]
    # The spec's firmware: a UEFI base carries an EFI system partition and
    # GRUB for EFI where a BIOS base has GRUB in the MBR gap, so the base
    # bootstrapped (and cached) differs with it.
    firmware: Firmware = Firmware.bios


@dataclasses.dataclass(frozen=True)
class FileBase:
    """Start from a local disk image; ``path`` is absolute."""

    path: Path
    sha256: str | None


@dataclasses.dataclass(frozen=True)
class UrlBase:
    """Start from a downloaded disk image, pinned by its digest."""

    url: str
    sha256: str


Base = DebootstrapBase | FileBase | UrlBase


@dataclasses.dataclass(frozen=True)
class VmResources:
    memory: int  # MiB
    cpus: int


@dataclasses.dataclass(frozen=True)
class Timeouts:
    boot: int  # seconds
    step: int
    shutdown: int


@dataclasses.dataclass(frozen=True)
class TemplateSpec:
    path: Path
    sha256: str  # of the spec file's bytes
    name: str
    version: str
    base: Base
    profile: str  # a shipped profile name, or an absolute path to a profile file
    packages: tuple[str, ...]
    upgrade: bool
    disk_size: int  # bytes
    vm: VmResources
    timeouts: Timeouts
    # The user's provisioning steps, in order (builder.provision).
    provision: tuple[Step, ...] = ()
    # What the template boots from, and whether its machines get a TPM 2.0.
    firmware: Firmware = Firmware.bios
    tpm: bool = False
    # The formats the artifact holds, qcow2 always first (builder.formats).
    outputs: tuple[OutputFormat, ...] = (OutputFormat.qcow2,)
    # An HTTP proxy for apt, named by a host environment variable (builder.proxy).
    apt_proxy: AptProxy | None = None
    # How the qcow2's clusters are compressed: zlib for consumers older than QEMU 5.1.
    compression: Compression = Compression.zstd

    def canonical(self) -> dict[str, Any]:
        """The spec's meaning as JSON-able data, for build keys.

        The spec's own path and digest are left out: moving the file or
        editing a comment does not change what gets built.
        """
        base: dict[str, Any]
        if isinstance(self.base, DebootstrapBase):
            base = {
                "debootstrap": {
                    "suite": self.base.suite,
                    "mirror": self.base.mirror,
                    "security_mirror": self.base.security_mirror,
                    "packages": list(self.base.packages),
                }
            }
        elif isinstance(self.base, FileBase):
            base = {"file": {"path": str(self.base.path), "sha256": self.base.sha256}}
        else:
            base = {"url": {"url": self.base.url, "sha256": self.base.sha256}}
        return {
            "name": self.name,
            "version": self.version,
            "base": base,
            "profile": self.profile,
            "packages": list(self.packages),
            "upgrade": self.upgrade,
            "disk_size": self.disk_size,
            "vm": {"memory": self.vm.memory, "cpus": self.vm.cpus},
            "timeouts": {
                "boot": self.timeouts.boot,
                "step": self.timeouts.step,
                "shutdown": self.timeouts.shutdown,
            },
            # Each step's settings and the digests of its inputs (file bytes,
            # scripts, keys, playbook folders): a changed input rebuilds.
            # Host secrets are named here, never their values.
            "provision": steps_key(self.provision),
            "firmware": str(self.firmware),
            "tpm": self.tpm,
            # Another output format is another artifact: its build key differs.
            "outputs": [str(fmt) for fmt in self.outputs],
            # Other compression, other bytes: another artifact.
            "compression": str(self.compression),
            # The variable's name and the direct hosts, never the URL; present
            # only when set, so the build keys of specs without it stay as they were.
            **({"apt_proxy": self.apt_proxy.record()} if self.apt_proxy else {}),
        }


def load_spec(path: Path) -> TemplateSpec:
    """Read, parse and check a template spec file.

    The file is read by the strict reading layer: a regular file of bounded
    size (a FIFO or /dev/zero is refused, not waited on), UTF-8, one YAML
    document with no duplicate keys (YAML would let a later key silently
    replace an earlier one, hiding which base or packages are really used),
    bounded nesting, aliases and integers.
    """
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        raise InputError(path, None, "spec file not found") from None
    except DataError as exc:
        raise InputError(path, None, f"cannot read spec file: {exc}") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot read spec file: {exc.strerror or exc}") from None
    try:
        data = loads_yaml(raw)
    except DataError as exc:
        raise InputError(path, None, str(exc)) from None
    if data is None:
        raise InputError(path, None, "expected a mapping of keys, got an empty file")
    folder = path.resolve().parent
    top = Section(path, "", data, _TOP_KEYS)
    firmware = _read_firmware(top)
    return TemplateSpec(
        path=path.resolve(),
        sha256=hashlib.sha256(raw).hexdigest(),
        name=top.pattern("name", NAME, "a name of a-z, 0-9, '.', '_', '-' starting a-z or 0-9"),
        version=_read_version(top),
        base=_read_base(top, folder, firmware),
        profile=_read_profile(top, folder),
        packages=top.packages("packages"),
        upgrade=top.boolean("upgrade", default=True),
        disk_size=_read_disk_size(top),
        vm=_read_vm(top),
        timeouts=_read_timeouts(top),
        provision=parse_steps(top, folder),
        firmware=firmware,
        tpm=top.boolean("tpm", default=False),
        outputs=_read_outputs(top),
        apt_proxy=_read_apt_proxy(top),
        compression=_read_compression(top),
    )


# Each section lists its keys, and whether each is required.
_TOP_KEYS = {
    "name": True,
    "version": True,
    "base": True,
    "profile": True,
    "packages": False,
    "upgrade": False,
    "disk_size": False,
    "vm": False,
    "timeouts": False,
    "provision": False,
    "firmware": False,
    "tpm": False,
    "outputs": False,
    "apt_proxy": False,
    "compression": False,
}
_APT_PROXY_KEYS = {"env_from_host": True, "direct": False}
_BASE_KEYS = {"debootstrap": False, "file": False, "url": False}
_DEBOOTSTRAP_KEYS = {"suite": True, "mirror": False, "security_mirror": False, "packages": False}
_FILE_KEYS = {"path": True, "sha256": False}
_URL_KEYS = {"url": True, "sha256": True}
_VM_KEYS = {"memory": False, "cpus": False}
_TIMEOUT_KEYS = dict.fromkeys(DEFAULT_TIMEOUTS, False)


def _read_version(top: Section) -> str:
    value = top.data["version"]
    if not isinstance(value, str):
        # YAML reads 1.0 as a number and 2024-01-01 as a date; 1.10 would
        # even become 1.1. Only a quoted string keeps the version as written.
        raise top.error("version", f'expected a quoted string such as "1.0", got {describe(value)}')
    check_text(value, lambda expected: top.error("version", expected))
    if VERSION.fullmatch(value) is None:
        raise top.error(
            "version",
            "expected a version of letters, digits and '.', '+', '_', '~', '-' (at most 64), "
            f"got {show(value)}",
        )
    return value


def _read_firmware(top: Section) -> Firmware:
    if not top.has("firmware"):
        return Firmware.bios
    value = top.string("firmware")
    try:
        return Firmware(value)
    except ValueError:
        choices = [str(f) for f in Firmware]
        hint = suggest(value, choices)
        raise top.error(
            "firmware", f"expected one of {', '.join(choices)}, got {show(value)}{hint}"
        ) from None


def _read_compression(top: Section) -> Compression:
    if not top.has("compression"):
        return Compression.zstd
    value = top.data["compression"]
    choices = [str(c) for c in Compression]
    if not isinstance(value, str) or value not in choices:
        shown = show(value) if isinstance(value, str) else describe(value)
        hint = suggest(value, choices) if isinstance(value, str) else ""
        raise top.error("compression", f"expected one of {', '.join(choices)}, got {shown}{hint}")
    return Compression(value)


def _read_base(top: Section, folder: Path, firmware: Firmware = Firmware.bios) -> Base:
    base = top.section("base", _BASE_KEYS)
    given = [key for key in _BASE_KEYS if base.has(key)]
    if len(given) != 1:
        got = "none" if not given else " and ".join(given)
        raise top.error("base", f"expected exactly one of debootstrap, file or url, got {got}")
    if base.has("debootstrap"):
        section = base.section("debootstrap", _DEBOOTSTRAP_KEYS)
        return DebootstrapBase(
            suite=section.pattern(
                "suite", SUITE, "a Debian suite name such as bookworm (at most 64 characters)"
            ),
            mirror=section.url("mirror", default=DEFAULT_MIRROR),
            security_mirror=section.url("security_mirror", default=DEFAULT_SECURITY_MIRROR),
            packages=section.packages("packages"),
            firmware=firmware,
        )
    if base.has("file"):
        section = base.section("file", _FILE_KEYS)
        image = (folder / section.string("path")).resolve()
        # os.path: a name too long for the file system is no file, not an OSError.
        if not os.path.isfile(image):
            raise section.error(
                "path",
                f"base image {image} does not exist or is not a file",
                hint="relative paths are resolved against the spec file's folder",
            )
        digest = section.sha256("sha256") if section.has("sha256") else None
        return FileBase(path=image, sha256=digest)
    section = base.section("url", _URL_KEYS)
    # A query is allowed here (a download link may need one), never in a mirror.
    return UrlBase(url=section.url("url", query=True), sha256=section.sha256("sha256"))


def _read_profile(top: Section, folder: Path) -> str:
    value = top.string("profile")
    if "/" in value or value.endswith((".yaml", ".yml")):
        profile = (folder / value).resolve()
        if not os.path.isfile(profile):
            raise top.error(
                "profile",
                f"profile file {profile} does not exist or is not a file",
                hint="relative paths are resolved against the spec file's folder",
            )
        return str(profile)
    if NAME.fullmatch(value) is None:
        raise top.error(
            "profile",
            f"expected a profile name (a-z, 0-9, '.', '_', '-') or a path to a .yaml file, "
            f"got {show(value)}",
        )
    return value


def _read_disk_size(top: Section) -> int:
    if not top.has("disk_size"):
        return DEFAULT_DISK_SIZE
    value = top.data["disk_size"]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise top.error(
            "disk_size", f"expected a size such as 4G or a number of bytes, got {describe(value)}"
        )
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise top.error("disk_size", str(exc)) from None
    if size < MIN_DISK_SIZE:
        raise top.error("disk_size", f"expected at least 1G, got {value}")
    if size > MAX_DISK_SIZE:
        raise top.error("disk_size", f"expected at most 64T, got {value}")
    return size


def _read_vm(top: Section) -> VmResources:
    vm = top.section("vm", _VM_KEYS)
    return VmResources(
        memory=vm.integer(
            "memory", default=DEFAULT_MEMORY, minimum=MIN_MEMORY, maximum=MAX_MEMORY, unit=" MiB"
        ),
        cpus=vm.integer("cpus", default=DEFAULT_CPUS, minimum=1, maximum=MAX_CPUS),
    )


def _read_timeouts(top: Section) -> Timeouts:
    section = top.section("timeouts", _TIMEOUT_KEYS)
    seconds = {
        key: section.integer(key, default=default, minimum=1, maximum=MAX_TIMEOUT, unit=" seconds")
        for key, default in DEFAULT_TIMEOUTS.items()
    }
    return Timeouts(**seconds)


def _read_outputs(top: Section) -> tuple[OutputFormat, ...]:
    """The output formats, in goldsmith's order with qcow2 first: the qcow2 is
    what validation boots and verify checks by default, so it is always made."""
    if not top.has("outputs"):
        return (OutputFormat.qcow2,)
    value = top.data["outputs"]
    known = ", ".join(ALL_FORMATS)
    if not isinstance(value, list) or not value:
        raise top.error(
            "outputs", f"expected a non-empty list of formats ({known}), got {describe(value)}"
        )
    seen: set[OutputFormat] = set()
    for index, item in enumerate(value):
        field = f"outputs[{index}]"
        if not isinstance(item, str) or item not in ALL_FORMATS:
            shown = show(item) if isinstance(item, str) else describe(item)
            names = [str(fmt) for fmt in ALL_FORMATS]
            hint = suggest(item, names) if isinstance(item, str) else ""
            raise top.error(field, f"expected one of {known}, got {shown}{hint}")
        fmt = OutputFormat(item)
        if fmt in seen:
            raise top.error(field, f"expected each format once, got {item!r} twice")
        seen.add(fmt)
    return tuple(fmt for fmt in ALL_FORMATS if fmt in seen or fmt is OutputFormat.qcow2)


def _read_apt_proxy(top: Section) -> AptProxy | None:
    """The proxy's variable name (its URL may hold credentials, so the spec
    never does) and the hosts apt reaches without it."""
    if not top.has("apt_proxy"):
        return None
    section = top.section("apt_proxy", _APT_PROXY_KEYS)
    name = section.pattern("env_from_host", ENV_NAME, "an environment variable name (A-Z, 0-9, _)")
    raw = section.data.get("direct", [])
    if not isinstance(raw, list):
        raise section.error("direct", f"expected a list of host names, got {describe(raw)}")
    direct: list[str] = []
    for index, item in enumerate(raw):
        field = f"direct[{index}]"
        if not isinstance(item, str) or not item:
            raise section.error(field, f"expected a host name or address, got {describe(item)}")
        check_text(item, functools.partial(section.error, field))
        if HOST_NAME.fullmatch(item) is None or len(item) > 253:
            raise section.error(field, f"expected a host name or IPv4 address, got {show(item)}")
        if item not in direct:
            direct.append(item)
    return AptProxy(env_from_host=name, direct=tuple(direct))
