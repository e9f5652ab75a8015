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
import difflib
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from builder.errors import InputError

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

# Names end up in file names and directory names, so they cannot hold a path
# separator or start with a dot or a dash.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
# Versions end up in artifact file names too; same reasoning, a little wider.
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_~-]*")
# Debian policy 5.6.1. Package names reach apt and mmdebstrap as arguments;
# the leading alphanumeric keeps a name from ever being read as an option.
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
# A suite is passed to mmdebstrap and written into sources.list.
_SUITE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_SIZE = re.compile(r"(\d+)\s*([KMGT]?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": KIB, "M": MIB, "G": GIB, "T": TIB}


@dataclasses.dataclass(frozen=True)
class DebootstrapBase:
    """Build the root file system from a Debian mirror."""

    suite: str
    mirror: str
    security_mirror: str
    packages: tuple[str, ...]


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
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"expected a size such as 4G, 512M or a number of bytes (K/M/G/T), got {text!r}"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]


def load_spec(path: Path) -> TemplateSpec:
    """Read, parse and check a template spec file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, None, "spec file not found") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot read spec file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, None, f"not UTF-8 text (byte {exc.start})") from exc
    data = _parse_yaml(path, text)
    if data is None:
        raise InputError(path, None, "expected a mapping of keys, got an empty file")
    folder = path.resolve().parent
    top = _Section(path, "", data, _TOP_KEYS)
    return TemplateSpec(
        path=path.resolve(),
        sha256=hashlib.sha256(raw).hexdigest(),
        name=top.pattern("name", _NAME, "a name of a-z, 0-9, '.', '_', '-' starting a-z or 0-9"),
        version=_read_version(top),
        base=_read_base(top, folder),
        profile=_read_profile(top, folder),
        packages=top.packages("packages"),
        upgrade=top.boolean("upgrade", default=True),
        disk_size=_read_disk_size(top),
        vm=_read_vm(top),
        timeouts=_read_timeouts(top),
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
}
_BASE_KEYS = {"debootstrap": False, "file": False, "url": False}
_DEBOOTSTRAP_KEYS = {"suite": True, "mirror": False, "security_mirror": False, "packages": False}
_FILE_KEYS = {"path": True, "sha256": False}
_URL_KEYS = {"url": True, "sha256": True}
_VM_KEYS = {"memory": False, "cpus": False}
_TIMEOUT_KEYS = dict.fromkeys(DEFAULT_TIMEOUTS, False)


def _parse_yaml(path: Path, text: str) -> Any:
    try:
        # compose() builds only the node tree, no Python objects: it is as
        # safe as safe_load and lets us see keys that safe_load would merge.
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _reject_duplicate_keys(path, node, "", set())
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "parse error"
        raise InputError(path, None, f"not valid YAML: {where}{problem}") from exc
    except yaml.YAMLError as exc:
        raise InputError(path, None, f"not valid YAML: {exc}") from exc


def _reject_duplicate_keys(path: Path, node: yaml.Node, where: str, seen: set[int]) -> None:
    # YAML lets a later key silently replace an earlier one; in a build spec
    # that hides which base or which packages are really used.
    if id(node) in seen:  # an alias to a node already checked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            field = _join(where, key)
            if isinstance(key_node, yaml.ScalarNode) and key != "<<":
                if key in keys:
                    line = key_node.start_mark.line + 1
                    raise InputError(path, field, f"key given twice (again on line {line})")
                keys.add(key)
            _reject_duplicate_keys(path, value_node, field, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _reject_duplicate_keys(path, item, f"{where}[{index}]", seen)


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
        return f"string {value!r}"
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
        close = difflib.get_close_matches(key, known, n=1)
        expected = "unknown key"
        if close:
            expected += f"; did you mean {close[0]!r}?"
        return self.error(key, expected, hint="valid keys here: " + ", ".join(known))

    def has(self, key: str) -> bool:
        return key in self.data

    def string(self, key: str, *, default: str | None = None) -> str:
        if key not in self.data and default is not None:
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_describe(value)}")
        if not value:
            raise self.error(key, "expected a non-empty string")
        return value

    def pattern(self, key: str, regex: re.Pattern[str], expected: str) -> str:
        value = self.string(key)
        if regex.fullmatch(value) is None:
            raise self.error(key, f"expected {expected}, got {value!r}")
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

    def integer(self, key: str, *, default: int, minimum: int, unit: str = "") -> int:
        if key not in self.data:
            return default
        value = self.data[key]
        # bool is a subclass of int in Python; `memory: true` is a mistake.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer{unit}, got {_describe(value)}")
        if value < minimum:
            raise self.error(key, f"expected at least {minimum}{unit}, got {value}")
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
                    f"expected a Debian package name (a-z, 0-9, '+', '-', '.'; at least two "
                    f"characters, starting a-z or 0-9), got {item!r}",
                )
            names.append(item)
        return tuple(names)

    def url(self, key: str, *, default: str | None = None) -> str:
        value = self.string(key, default=default)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or value != value.strip():
            raise self.error(key, f"expected an http:// or https:// URL, got {value!r}")
        return value

    def sha256(self, key: str) -> str:
        value = self.string(key)
        if _SHA256.fullmatch(value) is None:
            raise self.error(key, f"expected a SHA-256 digest of 64 hex digits, got {value!r}")
        return value.lower()

    def section(self, key: str, keys: Mapping[str, bool]) -> _Section:
        return _Section(self.path, self.field(key), self.data.get(key, {}), keys)


def _read_version(top: _Section) -> str:
    value = top.data["version"]
    if not isinstance(value, str):
        # YAML reads 1.0 as a number and 2024-01-01 as a date; 1.10 would
        # even become 1.1. Only a quoted string keeps the version as written.
        raise top.error(
            "version", f'expected a quoted string such as "1.0", got {_describe(value)}'
        )
    if _VERSION.fullmatch(value) is None:
        raise top.error(
            "version",
            f"expected a version of letters, digits and '.', '+', '_', '~', '-', got {value!r}",
        )
    return value


def _read_base(top: _Section, folder: Path) -> Base:
    base = top.section("base", _BASE_KEYS)
    given = [key for key in _BASE_KEYS if base.has(key)]
    if len(given) != 1:
        got = "none" if not given else " and ".join(given)
        raise top.error("base", f"expected exactly one of debootstrap, file or url, got {got}")
    if base.has("debootstrap"):
        section = base.section("debootstrap", _DEBOOTSTRAP_KEYS)
        return DebootstrapBase(
            suite=section.pattern("suite", _SUITE, "a Debian suite name such as bookworm"),
            mirror=section.url("mirror", default=DEFAULT_MIRROR),
            security_mirror=section.url("security_mirror", default=DEFAULT_SECURITY_MIRROR),
            packages=section.packages("packages"),
        )
    if base.has("file"):
        section = base.section("file", _FILE_KEYS)
        image = (folder / section.string("path")).resolve()
        if not image.is_file():
            raise section.error(
                "path",
                f"base image {image} does not exist or is not a file",
                hint="relative paths are resolved against the spec file's folder",
            )
        digest = section.sha256("sha256") if section.has("sha256") else None
        return FileBase(path=image, sha256=digest)
    section = base.section("url", _URL_KEYS)
    return UrlBase(url=section.url("url"), sha256=section.sha256("sha256"))


def _read_profile(top: _Section, folder: Path) -> str:
    value = top.string("profile")
    if "/" in value or value.endswith((".yaml", ".yml")):
        profile = (folder / value).resolve()
        if not profile.is_file():
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
            f"got {value!r}",
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
    return size


def _read_vm(top: _Section) -> VmResources:
    vm = top.section("vm", _VM_KEYS)
    return VmResources(
        memory=vm.integer("memory", default=DEFAULT_MEMORY, minimum=MIN_MEMORY, unit=" MiB"),
        cpus=vm.integer("cpus", default=DEFAULT_CPUS, minimum=1),
    )


def _read_timeouts(top: _Section) -> Timeouts:
    section = top.section("timeouts", _TIMEOUT_KEYS)
    seconds = {
        key: section.integer(key, default=default, minimum=1, unit=" seconds")
        for key, default in DEFAULT_TIMEOUTS.items()
    }
    return Timeouts(**seconds)
