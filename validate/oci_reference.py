"""A registry reference (``host[:port]/path[:tag|@sha256:<hex>]``), read strictly.

``ship``, ``pull``, ``plan --manifests`` and the registry base cache name a
repository this way; validate/registry.py's client talks to the one it names.
"""

from __future__ import annotations

import dataclasses
import re

from builder.errors import InputError
from hardening.strictdata import escape

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]{{2,45}}\])(?::([0-9]{{1,5}}))?")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # a manifest or blob digest, as references name it
REFERENCE_FORMAT = "host[:port]/path[:tag|@sha256:<64 hex>]"


@dataclasses.dataclass(frozen=True)
class Reference:
    host: str  # with its port, if any
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What /v2/<path>/manifests/<reference> takes: the digest, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        suffix = f"@{self.digest}" if self.digest else f":{self.tag}" if self.tag else ""
        return f"{self.host}/{self.path}{suffix}"


def parse_reference(text: str, *, field: str = "REF") -> Reference:
    """A registry reference, read strictly: an explicit host (no default
    registry is guessed), lower-case path components, a tag or a sha256
    digest; ASCII only, no spaces or control characters anywhere."""

    def bad(why: str) -> InputError:
        return InputError(
            None, field, f"expected {REFERENCE_FORMAT} ({why}), got {escape(repr(text), 300)}"
        )

    if not text or len(text) > 512 or not text.isascii() or not text.isprintable() or " " in text:
        raise bad("printable ASCII without spaces, at most 512 characters")
    host, sep, rest = text.partition("/")
    if not sep:
        raise bad("no path")
    match = _HOST.fullmatch(host)
    if match is None or not ("." in host or ":" in host or host == "localhost"):
        raise bad("the registry's host name first, e.g. registry.example.com or localhost:5000")
    if match.group(1) is not None and not 0 < int(match.group(1)) < 65536:
        raise bad("a port from 1 to 65535")
    digest = tag = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if DIGEST.fullmatch(digest) is None:
            raise bad("a digest is sha256: and 64 lower-case hex digits")
    last = rest.rpartition("/")[2]
    if ":" in last:
        rest, _, tag = rest.rpartition(":")
        if _TAG.fullmatch(tag) is None:
            raise bad("a tag is letters, digits, '_', '.', '-', at most 128")
    if len(rest) > 255 or _PATH.fullmatch(rest) is None:
        raise bad("path components of a-z, 0-9 and single separators . _ __ -")
    if tag is not None and digest is not None:
        raise bad("a tag or a digest, not both")
    return Reference(host, rest, tag, digest)
