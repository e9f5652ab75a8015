"""The template spec: one YAML file, read once into frozen dataclasses.

``load_spec`` is the only place that sees the raw YAML. Everything it returns
is typed and already checked, so later stages never meet a dict, a missing key
or a value of the wrong type. Every problem is an ``InputError`` naming the
file, the key path (``base.url.sha256``, ``vm.memory``, ``packages[2]``) and
what was expected.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from builder.errors import InputError
from builder.firmware import Firmware
from builder.formats import ALL_FORMATS, OutputFormat
from builder.provision import ENV_NAME, Step, parse_steps, steps_key
from builder.proxy import AptProxy
from hardening.errors import suggest
from hardening.strictdata import DataError, loads_yaml, read_regular

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

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
MAX_URL = 2048
MAX_PATH = 4096
MAX_SCRIPT = 1024 * 1024  # an inline script in a spec

# Every pattern is ASCII by construction (explicit ranges, no \d, \s or \w,
# which match other scripts' digits and spaces) and matched whole (fullmatch).
# Names end up in file names, directory names and the guest's host name, so
# they cannot hold a path separator, start with a dot or a dash, or be long.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# Versions end up in artifact file names too; same reasoning, a little wider.
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_~-]{0,63}")
# Debian policy 5.6.1. Package names reach apt and mmdebstrap as arguments;
# the leading alphanumeric keeps a name from ever being read as an option.
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]{1,127}")
# A suite is passed to mmdebstrap, written into sources.list and into the
# path of a package index URL.
_SUITE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_SIZE = re.compile(r"[ \t]*([0-9]{1,20})[ \t]*([KMGTkmgt]?)[ \t]*")
_SIZE_UNITS = {"": 1, "K": KIB, "M": MIB, "G": GIB, "T": TIB}
# What no spec string may hold anywhere: C0 and C1 controls (newlines start a
# new sources.list entry or shell line, escape sequences rewrite a terminal),
# DEL, Unicode line and paragraph separators, and bidirectional overrides that
# make a value read differently from what it is.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")

# URLs: http or https only, printable ASCII only, a conservative alphabet. A
# mirror URL becomes one word of a sources.list line and one argument of
# mmdebstrap; nothing in it may start another word, line or option. Characters
# a shell or a sources.list gives meaning to (quotes, $, `, ;, (, ), spaces)
# are refused outright rather than trusted to be harmless downstream; a URL
# that needs them can percent-encode them.
_URL_SCHEMES = ("http", "https")
_URL_PATH_CHARS = re.compile(r"[A-Za-z0-9._~/%+-]*")
_URL_QUERY_CHARS = re.compile(r"[A-Za-z0-9._~/%+=&-]*")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?:{_HOST_LABEL}\.)*{_HOST_LABEL}\.?")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")


def _show(value: str, limit: int = 80) -> str:
    """A value from the spec, quoted for a one-line message: repr() escapes
    control characters, and long values are cut."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."


def url_problem(value: str, *, query: bool = False) -> str | None:
    """What is wrong with ``value`` as a URL goldsmith fetches from, or None.

    file:// is refused everywhere: a local disk image is ``base.file`` (with
    its own checks), a local mirror can be served on 127.0.0.1, and
    ``outdated`` must never be pointed at the host's own files. Credentials
    (user:password@) are refused: the URL is recorded in build.json, the
    signed manifest and the logs; apt's auth.conf is the place for them.
    """
    expected = "expected an http:// or https:// URL"
    if len(value) > MAX_URL:
        return f"{expected} of at most {MAX_URL} characters"
    if not value.isascii() or not value.isprintable() or " " in value:
        return f"{expected} without spaces or control characters, got {_show(value)}"
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in _URL_SCHEMES:
        return f"{expected}, got {_show(value)}"
    authority = rest.partition("/")[0]
    if "@" in authority:
        return (
            f"{expected} without credentials (user:password@): URLs are recorded in "
            "build.json and the manifest"
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"{expected}, got {_show(value)} ({exc})"
    if not _valid_host(authority, parts.hostname or "") or port == 0:
        return f"{expected} with a host name or address, got {_show(value)}"
    if "#" in value:
        return f"{expected} without a #fragment, got {_show(value)}"
    if "?" in value:
        if not query:
            return f"{expected} without a ?query, got {_show(value)}"
        if _URL_QUERY_CHARS.fullmatch(parts.query) is None:
            return f"{expected} whose query holds only letters, digits and ._~/%+=&-"
    if _URL_PATH_CHARS.fullmatch(parts.path) is None:
        return (
            f"{expected} whose path holds only letters, digits and ._~/%+- "
            f"(percent-encode anything else), got {_show(value)}"
        )
    for index, char in enumerate(value):
        if char == "%":
            code = value[index + 1 : index + 3]
            # A %-escape of a control character decodes into one somewhere downstream.
            if _HEX2.fullmatch(code) is None or int(code, 16) < 0x20 or int(code, 16) == 0x7F:
                return f"{expected} with %-escapes of printable characters only, got {_show(value)}"
    return None


def _valid_host(authority: str, host: str) -> bool:
    if not host:
        return False
    if authority.startswith("["):
        # An IPv6 literal: [::1] or [::1]:3142.
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return _HOST_NAME.fullmatch(host) is not None


def suite_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a Debian suite name, or None."""
    if _SUITE.fullmatch(value) is None:
        return (
            "expected a Debian suite name such as bookworm (a-z, 0-9, '.', '_', '-', "
            f"at most 64 characters), got {_show(value)}"
        )
    return None


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
            # The variable's name and the direct hosts, never the URL; present
            # only when set, so the build keys of specs without it stay as they were.
            **({"apt_proxy": self.apt_proxy.record()} if self.apt_proxy else {}),
        }


def parse_size(text: str | int) -> int:
    """Bytes from ``4294967296``, ``"4G"`` or ``"512M"`` (K/M/G/T are powers of 1024).

    Raises ValueError; callers that know where the value came from turn it
    into an InputError.
    """
    if isinstance(text, bool):
        raise ValueError("expected a size such as 4G or a number of bytes, got a boolean")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"expected a size of at least 0 bytes, got {text}")
        return text
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"expected a size such as 4G, 512M or a number of bytes (K/M/G/T), got {_show(text)}"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]


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
    top = _Section(path, "", data, _TOP_KEYS)
    firmware = _read_firmware(top)
    return TemplateSpec(
        path=path.resolve(),
        sha256=hashlib.sha256(raw).hexdigest(),
        name=top.pattern("name", _NAME, "a name of a-z, 0-9, '.', '_', '-' starting a-z or 0-9"),
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
}
_APT_PROXY_KEYS = {"env_from_host": True, "direct": False}
_BASE_KEYS = {"debootstrap": False, "file": False, "url": False}
_DEBOOTSTRAP_KEYS = {"suite": True, "mirror": False, "security_mirror": False, "packages": False}
_FILE_KEYS = {"path": True, "sha256": False}
_URL_KEYS = {"url": True, "sha256": True}
_VM_KEYS = {"memory": False, "cpus": False}
_TIMEOUT_KEYS = dict.fromkeys(DEFAULT_TIMEOUTS, False)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {_show(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime.date):
        return f"date {value.isoformat()}"
    return type(value).__name__


class _Section:
    """One mapping of the spec, with the key path that leads to it.

    Construction rejects a non-mapping, unknown keys and missing required
    keys; the typed getters then name the full key path in every error.
    """

    def __init__(self, path: Path, where: str, value: Any, keys: Mapping[str, bool]) -> None:
        self.path = path
        self.where = where
        if not isinstance(value, dict):
            raise self.error(None, f"expected a mapping of keys, got {_describe(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.error(None, f"expected string keys, got key {_describe(key)}")
            if _CONTROL.search(key) or len(key) > 64:
                raise self.error(None, f"expected keys of printable characters, got {_show(key)}")
            if key not in keys:
                raise self._unknown(key, keys)
        for key, required in keys.items():
            if required and key not in value:
                raise self.error(key, "required key is missing")
        self.data: dict[str, Any] = value

    def field(self, key: str | None) -> str:
        if key is None:
            return self.where
        return _join(self.where, key)

    def error(self, key: str | None, expected: str, *, hint: str | None = None) -> InputError:
        return InputError(self.path, self.field(key) or None, expected, hint=hint)

    def _unknown(self, key: str, keys: Mapping[str, bool]) -> InputError:
        known = sorted(keys)
        expected = "unknown key" + suggest(key, known)
        return self.error(key, expected, hint="valid keys here: " + ", ".join(known))

    def has(self, key: str) -> bool:
        return key in self.data

    def string(self, key: str, *, default: str | None = None, multiline: bool = False) -> str:
        """Every string of the spec comes through here: no control characters
        anywhere, whatever the field, before any field-specific pattern.

        ``multiline`` is for text that is a document of its own (an inline
        script): newlines and tabs are allowed there, other controls are not.
        """
        if key not in self.data and default is not None:
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_describe(value)}")
        if not value:
            raise self.error(key, "expected a non-empty string")
        _check_text(
            value.replace("\n", " ").replace("\t", " ") if multiline else value,
            lambda expected: self.error(key, expected),
            limit=MAX_SCRIPT if multiline else MAX_PATH,
        )
        return value

    def pattern(self, key: str, regex: re.Pattern[str], expected: str) -> str:
        value = self.string(key)
        if regex.fullmatch(value) is None:
            raise self.error(key, f"expected {expected}, got {_show(value)}")
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        if key not in self.data:
            return default
        value = self.data[key]
        # A quoted "yes" or "false" is a string, and a non-empty string would
        # be truthy: refuse anything that is not a real YAML boolean.
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_describe(value)}")
        return value

    def integer(self, key: str, *, default: int, minimum: int, maximum: int, unit: str = "") -> int:
        if key not in self.data:
            return default
        value = self.data[key]
        # bool is a subclass of int in Python; `memory: true` is a mistake.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer{unit}, got {_describe(value)}")
        if value < minimum:
            raise self.error(key, f"expected at least {minimum}{unit}, got {value}")
        if value > maximum:
            raise self.error(key, f"expected at most {maximum}{unit}, got {value}")
        return value

    def packages(self, key: str) -> tuple[str, ...]:
        if key not in self.data:
            return ()
        value = self.data[key]
        if not isinstance(value, list):
            raise self.error(key, f"expected a list of package names, got {_describe(value)}")
        names: list[str] = []
        for index, item in enumerate(value):
            field = f"{self.field(key)}[{index}]"
            if not isinstance(item, str):
                raise InputError(
                    self.path, field, f"expected a package name, got {_describe(item)}"
                )
            if _PACKAGE.fullmatch(item) is None:
                raise InputError(
                    self.path,
                    field,
                    f"expected a Debian package name (a-z, 0-9, '+', '-', '.'; two to 128 "
                    f"characters, starting a-z or 0-9), got {_show(item)}",
                )
            names.append(item)
        return tuple(names)

    def url(self, key: str, *, default: str | None = None, query: bool = False) -> str:
        value = self.string(key, default=default)
        problem = url_problem(value, query=query)
        if problem is not None:
            raise self.error(key, problem)
        return value

    def sha256(self, key: str) -> str:
        value = self.string(key)
        if _SHA256.fullmatch(value) is None:
            raise self.error(key, f"expected a SHA-256 digest of 64 hex digits, got {_show(value)}")
        return value.lower()

    def section(self, key: str, keys: Mapping[str, bool]) -> _Section:
        return _Section(self.path, self.field(key), self.data.get(key, {}), keys)


def _check_text(value: str, error: Callable[[str], InputError], *, limit: int = MAX_PATH) -> None:
    match = _CONTROL.search(value)
    if match is not None:
        raise error(
            f"expected text without control characters, got {_show(match.group())} "
            f"at character {match.start() + 1}"
        )
    if len(value) > limit:
        raise error(f"expected at most {limit} characters, got {len(value)}")


def _read_version(top: _Section) -> str:
    value = top.data["version"]
    if not isinstance(value, str):
        # YAML reads 1.0 as a number and 2024-01-01 as a date; 1.10 would
        # even become 1.1. Only a quoted string keeps the version as written.
        raise top.error(
            "version", f'expected a quoted string such as "1.0", got {_describe(value)}'
        )
    _check_text(value, lambda expected: top.error("version", expected))
    if _VERSION.fullmatch(value) is None:
        raise top.error(
            "version",
            "expected a version of letters, digits and '.', '+', '_', '~', '-' (at most 64), "
            f"got {_show(value)}",
        )
    return value


def _read_firmware(top: _Section) -> Firmware:
    if not top.has("firmware"):
        return Firmware.bios
    value = top.string("firmware")
    try:
        return Firmware(value)
    except ValueError:
        choices = [str(f) for f in Firmware]
        hint = suggest(value, choices)
        raise top.error(
            "firmware", f"expected one of {', '.join(choices)}, got {_show(value)}{hint}"
        ) from None


def _read_base(top: _Section, folder: Path, firmware: Firmware = Firmware.bios) -> Base:
    base = top.section("base", _BASE_KEYS)
    given = [key for key in _BASE_KEYS if base.has(key)]
    if len(given) != 1:
        got = "none" if not given else " and ".join(given)
        raise top.error("base", f"expected exactly one of debootstrap, file or url, got {got}")
    if base.has("debootstrap"):
        section = base.section("debootstrap", _DEBOOTSTRAP_KEYS)
        return DebootstrapBase(
            suite=section.pattern(
                "suite", _SUITE, "a Debian suite name such as bookworm (at most 64 characters)"
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


def _read_profile(top: _Section, folder: Path) -> str:
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
    if _NAME.fullmatch(value) is None:
        raise top.error(
            "profile",
            f"expected a profile name (a-z, 0-9, '.', '_', '-') or a path to a .yaml file, "
            f"got {_show(value)}",
        )
    return value


def _read_disk_size(top: _Section) -> int:
    if not top.has("disk_size"):
        return DEFAULT_DISK_SIZE
    value = top.data["disk_size"]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise top.error(
            "disk_size", f"expected a size such as 4G or a number of bytes, got {_describe(value)}"
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


def _read_vm(top: _Section) -> VmResources:
    vm = top.section("vm", _VM_KEYS)
    return VmResources(
        memory=vm.integer(
            "memory", default=DEFAULT_MEMORY, minimum=MIN_MEMORY, maximum=MAX_MEMORY, unit=" MiB"
        ),
        cpus=vm.integer("cpus", default=DEFAULT_CPUS, minimum=1, maximum=MAX_CPUS),
    )


def _read_timeouts(top: _Section) -> Timeouts:
    section = top.section("timeouts", _TIMEOUT_KEYS)
    seconds = {
        key: section.integer(key, default=default, minimum=1, maximum=MAX_TIMEOUT, unit=" seconds")
        for key, default in DEFAULT_TIMEOUTS.items()
    }
    return Timeouts(**seconds)


def _read_outputs(top: _Section) -> tuple[OutputFormat, ...]:
    """The output formats, in goldsmith's order with qcow2 first: the qcow2 is
    what validation boots and verify checks by default, so it is always made."""
    if not top.has("outputs"):
        return (OutputFormat.qcow2,)
    value = top.data["outputs"]
    known = ", ".join(ALL_FORMATS)
    if not isinstance(value, list) or not value:
        raise top.error(
            "outputs", f"expected a non-empty list of formats ({known}), got {_describe(value)}"
        )
    seen: set[OutputFormat] = set()
    for index, item in enumerate(value):
        field = f"outputs[{index}]"
        if not isinstance(item, str) or item not in ALL_FORMATS:
            shown = _show(item) if isinstance(item, str) else _describe(item)
            names = [str(fmt) for fmt in ALL_FORMATS]
            hint = suggest(item, names) if isinstance(item, str) else ""
            raise top.error(field, f"expected one of {known}, got {shown}{hint}")
        fmt = OutputFormat(item)
        if fmt in seen:
            raise top.error(field, f"expected each format once, got {item!r} twice")
        seen.add(fmt)
    return tuple(fmt for fmt in ALL_FORMATS if fmt in seen or fmt is OutputFormat.qcow2)


def _read_apt_proxy(top: _Section) -> AptProxy | None:
    """The proxy's variable name (its URL may hold credentials, so the spec
    never does) and the hosts apt reaches without it."""
    if not top.has("apt_proxy"):
        return None
    section = top.section("apt_proxy", _APT_PROXY_KEYS)
    name = section.pattern("env_from_host", ENV_NAME, "an environment variable name (A-Z, 0-9, _)")
    raw = section.data.get("direct", [])
    if not isinstance(raw, list):
        raise section.error("direct", f"expected a list of host names, got {_describe(raw)}")
    direct: list[str] = []
    for index, item in enumerate(raw):
        field = f"direct[{index}]"
        if not isinstance(item, str) or not item:
            raise section.error(field, f"expected a host name or address, got {_describe(item)}")
        _check_text(item, functools.partial(section.error, field))
        if _HOST_NAME.fullmatch(item) is None or len(item) > 253:
            raise section.error(field, f"expected a host name or IPv4 address, got {_show(item)}")
        if item not in direct:
            direct.append(item)
    return AptProxy(env_from_host=name, direct=tuple(direct))
