"""Typed tunables: what a control's ``parameters`` may hold, and how a value
reaches a shell.

Every parameter a control declares has a type, and every value (the catalog's
default, a profile's override) is checked against it before any mechanism sees
it. The types are narrow on purpose: a port is a number, a group name follows
the POSIX rule, a path is plain characters. Only ``text`` admits quotes, ``$``
and backticks, and no value of any type holds a line break or another control
character.

Values never become shell code. A mechanism whose parameters hold bash (the
script mechanism's ``apply`` and ``check``) receives them as shell variables,
assigned from single-quoted words by :func:`shell_assignments`; its bash reads
``"${name}"``, and the result of an expansion is never parsed again.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from hardening.errors import ParamError, suggest
from hardening.shell import q

# A parameter name is a bash variable name, so it can be assigned as one.
NAME = r"[a-z_][a-z0-9_]*"
# Where mechanism parameters carry the variables a code key reads (set by the
# catalog when it resolves a control; never written in a catalog file).
VARIABLES = "variables"

POSIX_NAME = re.compile(r"[a-z_][a-z0-9_-]*[$]?")
PLAIN_PATH = re.compile(r"/[A-Za-z0-9_.+@:/-]*")
SIZE = re.compile(r"[0-9]{1,12}[kKmMgGtT%]?")
PBKDF2 = re.compile(
    r"grub\.pbkdf2\.sha512\.[1-9][0-9]{0,9}\.[0-9A-Fa-f]{16,1024}\.[0-9A-Fa-f]{16,1024}"
)
HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
MAX_ITEMS = 1000
MAX_TEXT = 4096


class ParamType(enum.StrEnum):
    port = "port"
    port_list = "port_list"
    int = "int"
    name = "name"
    name_list = "name_list"
    path = "path"
    path_list = "path_list"
    host_list = "host_list"
    size = "size"
    text = "text"
    pbkdf2 = "pbkdf2"


_LISTS = {
    ParamType.port_list: ParamType.port,
    ParamType.name_list: ParamType.name,
    ParamType.path_list: ParamType.path,
    ParamType.host_list: ParamType.host_list,  # items are single hosts
}
_DESCRIBE = {
    ParamType.port: "a port number (1-65535)",
    ParamType.name: "a user or group name ([a-z_][a-z0-9_-]*[$]?, at most 32 characters)",
    ParamType.path: (
        "an absolute path of plain characters (letters, digits, _ . + @ : - /) "
        "without . or .. components"
    ),
    ParamType.host_list: "host names or IP addresses",
    ParamType.size: "a size like 512M (digits and an optional k, M, G, T or %)",
    ParamType.text: (
        f"one line of text without control characters (at most {MAX_TEXT} characters)"
    ),
    ParamType.pbkdf2: (
        "a GRUB password hash (grub.pbkdf2.sha512.N.HEX.HEX from grub-mkpasswd-pbkdf2) or empty"
    ),
}
DECLARATION_KEYS = frozenset({"type", "default", "min", "max"})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _port(value: Any) -> int | None:
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,5}", value):
        value = int(value)
    if _is_int(value) and 1 <= value <= 65535:
        return int(value)
    return None


def _path(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 4096 or not PLAIN_PATH.fullmatch(value):
        return None
    if any(part in (".", "..") for part in value.split("/")):
        return None
    return value


def _host(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    # Digits, hex and separators only: ipaddress would also take an IPv6
    # zone ("fe80::1%<anything>"), which is no host to name in a config.
    if re.fullmatch(r"[0-9A-Fa-f:.]+", value):
        try:
            ipaddress.ip_address(value)
        except ValueError:
            pass
        else:
            return value
    labels = value.split(".")
    if len(value) > 253 or not all(HOST_LABEL.fullmatch(label) for label in labels):
        return None
    return value


def _single_line(value: str) -> bool:
    """No control character (C0, DEL, C1) and no Unicode line or paragraph
    separator: the text stays one line wherever it is written."""
    return not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value)


def _scalar(kind: ParamType, value: Any) -> Any:
    """The value in its normal form, or None when it is not of the type."""
    if kind is ParamType.port:
        return _port(value)
    if kind is ParamType.name:
        ok = isinstance(value, str) and len(value) <= 32 and bool(POSIX_NAME.fullmatch(value))
        return value if ok else None
    if kind is ParamType.path:
        return _path(value)
    if kind is ParamType.host_list:
        return _host(value)
    if kind is ParamType.size:
        return value if isinstance(value, str) and SIZE.fullmatch(value) else None
    if kind is ParamType.text:
        ok = isinstance(value, str) and len(value) <= MAX_TEXT and _single_line(value)
        return value if ok else None
    if kind is ParamType.pbkdf2:
        ok = isinstance(value, str) and (value == "" or bool(PBKDF2.fullmatch(value)))
        return value if ok else None
    return None


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: its type, default and (for ``int``) bounds."""

    type: ParamType
    default: Any
    minimum: int | None = None
    maximum: int | None = None

    def describe(self) -> str:
        """What a value must be, as the tail of a one-line error."""
        if self.type is ParamType.int:
            if self.minimum is not None and self.maximum is not None:
                return f"an integer from {self.minimum} to {self.maximum}"
            if self.minimum is not None:
                return f"an integer of at least {self.minimum}"
            if self.maximum is not None:
                return f"an integer of at most {self.maximum}"
            return "an integer"
        if self.type in _LISTS:
            item = _DESCRIBE[_LISTS[self.type]]
            if self.type is ParamType.host_list:
                return f"a non-empty list of {item}"
            return f"a non-empty list, each {item}"
        return _DESCRIBE[self.type]

    def check(self, value: Any) -> Any:
        """``value`` in its normal form (ports as integers, lists as lists);
        ParamError("", what it must be) when it is not of this type."""
        normal = self._normal(value)
        if normal is None:
            raise ParamError("", self.describe())
        return normal

    def _normal(self, value: Any) -> Any:
        if self.type is ParamType.int:
            if not _is_int(value):
                return None
            if self.minimum is not None and value < self.minimum:
                return None
            if self.maximum is not None and value > self.maximum:
                return None
            return int(value)
        if self.type in _LISTS:
            if self.type is ParamType.host_list and isinstance(value, str):
                if not _single_line(value):
                    return None
                value = value.split()  # "a.example b.example", as timesyncd writes it
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_ITEMS:
                return None
            items = [_scalar(_LISTS[self.type], item) for item in value]
            return None if any(item is None for item in items) else items
        return _scalar(self.type, value)


def parse_declaration(data: Any) -> ParamSpec:
    """A catalog declaration ``{type: T, default: V, min: N, max: N}``; the
    default is checked against the type. ParamError names the key at fault."""
    if not isinstance(data, Mapping):
        raise ParamError("", "a mapping {type: <type>, default: <value>}")
    for key in data:
        if key not in DECLARATION_KEYS:
            raise ParamError(f".{key}", "unknown key" + suggest(str(key), DECLARATION_KEYS))
    try:
        kind = ParamType(str(data.get("type")))
    except ValueError:
        raise ParamError(".type", "one of " + ", ".join(t.value for t in ParamType)) from None
    bounds = {key: data.get(key) for key in ("min", "max")}
    for key, bound in bounds.items():
        if bound is None:
            continue
        if kind is not ParamType.int:
            raise ParamError(f".{key}", "only for type int")
        if not _is_int(bound):
            raise ParamError(f".{key}", "an integer")
    if bounds["min"] is not None and bounds["max"] is not None and bounds["min"] > bounds["max"]:
        raise ParamError(".max", "at least min")
    if "default" not in data:
        raise ParamError(".default", "required")
    spec = ParamSpec(kind, None, bounds["min"], bounds["max"])
    try:
        default = spec.check(data["default"])
    except ParamError as exc:
        raise ParamError(".default", exc.expected) from None
    return dataclasses.replace(spec, default=default)


def as_text(value: Any) -> str:
    """A checked value as one string: lists joined with commas."""
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def shell_assignments(variables: Mapping[str, Any]) -> str:
    """``name='value'`` lines, one per variable, each value a single-quoted
    word: whatever it holds, bash assigns it and runs none of it."""
    lines = []
    for name, value in variables.items():
        if not re.fullmatch(NAME, name):
            raise ParamError(f"{VARIABLES}.{name}", "a parameter name like su_group")
        lines.append(f"{name}={q(as_text(value))}")
    return "".join(line + "\n" for line in lines)
