"""What a single value of a template spec may be: text without control
characters, names, versions, package and suite names, digests, sizes and the
URLs goldsmith fetches from. Each rule is a pattern or a function that says
what is wrong in one line (quoting the value with :func:`show`); the spec's
model and loader (:mod:`builder.spec`) apply them field by field, and the
mirror index reader reuses the URL and suite rules.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from builder.errors import InputError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

MAX_URL = 2048
MAX_PATH = 4096
MAX_SCRIPT = 1024 * 1024  # an inline script in a spec

# Every pattern is ASCII by construction (explicit ranges, no \d, \s or \w,
# which match other scripts' digits and spaces) and matched whole (fullmatch).
# Names end up in file names, directory names and the guest's host name, so
# they cannot hold a path separator, start with a dot or a dash, or be long.
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# Versions end up in artifact file names too; same reasoning, a little wider.
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_~-]{0,63}")
# Debian policy 5.6.1. Package names reach apt and mmdebstrap as arguments;
# the leading alphanumeric keeps a name from ever being read as an option.
PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]{1,127}")
# A suite is passed to mmdebstrap, written into sources.list and into the
# path of a package index URL.
SUITE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_SIZE = re.compile(r"[ \t]*([0-9]{1,20})[ \t]*([KMGTkmgt]?)[ \t]*")
_SIZE_UNITS = {"": 1, "K": KIB, "M": MIB, "G": GIB, "T": TIB}
# What no spec string may hold anywhere: C0 and C1 controls (newlines start a
# new sources.list entry or shell line, escape sequences rewrite a terminal),
# DEL, Unicode line and paragraph separators, and bidirectional overrides that
# make a value read differently from what it is.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")

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
HOST_NAME = re.compile(rf"(?:{_HOST_LABEL}\.)*{_HOST_LABEL}\.?")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")


def show(value: str, limit: int = 80) -> str:
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
        return f"{expected} without spaces or control characters, got {show(value)}"
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in _URL_SCHEMES:
        return f"{expected}, got {show(value)}"
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
        return f"{expected}, got {show(value)} ({exc})"
    if not valid_host(authority, parts.hostname or "") or port == 0:
        return f"{expected} with a host name or address, got {show(value)}"
    if "#" in value:
        return f"{expected} without a #fragment, got {show(value)}"
    if "?" in value:
        if not query:
            return f"{expected} without a ?query, got {show(value)}"
        if _URL_QUERY_CHARS.fullmatch(parts.query) is None:
            return f"{expected} whose query holds only letters, digits and ._~/%+=&-"
    if _URL_PATH_CHARS.fullmatch(parts.path) is None:
        return (
            f"{expected} whose path holds only letters, digits and ._~/%+- "
            f"(percent-encode anything else), got {show(value)}"
        )
    for index, char in enumerate(value):
        if char == "%":
            code = value[index + 1 : index + 3]
            # A %-escape of a control character decodes into one somewhere downstream.
            if _HEX2.fullmatch(code) is None or int(code, 16) < 0x20 or int(code, 16) == 0x7F:
                return f"{expected} with %-escapes of printable characters only, got {show(value)}"
    return None


def valid_host(authority: str, host: str) -> bool:
    if not host:
        return False
    if authority.startswith("["):
        # An IPv6 literal: [::1] or [::1]:3142.
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return HOST_NAME.fullmatch(host) is not None


def suite_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a Debian suite name, or None."""
    if SUITE.fullmatch(value) is None:
        return (
            "expected a Debian suite name such as bookworm (a-z, 0-9, '.', '_', '-', "
            f"at most 64 characters), got {show(value)}"
        )
    return None


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
            f"expected a size such as 4G, 512M or a number of bytes (K/M/G/T), got {show(text)}"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {show(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime.date):
        return f"date {value.isoformat()}"
    return type(value).__name__


def check_text(value: str, error: Callable[[str], InputError], *, limit: int = MAX_PATH) -> None:
    match = CONTROL.search(value)
    if match is not None:
        raise error(
            f"expected text without control characters, got {show(match.group())} "
            f"at character {match.start() + 1}"
        )
    if len(value) > limit:
        raise error(f"expected at most {limit} characters, got {len(value)}")
