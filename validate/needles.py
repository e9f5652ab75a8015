"""What the block scan looks for: needles, and one search over a stream of pieces.

A needle is a byte string that must not be anywhere on the template's disk:
the build's SSH keys (raw, base64 at every alignment, fingerprint), their
comments, the build VM's machine-id, the seed's instance id, and the value of
every host secret the build was given. They are built from build.json's
public values and from secrets in goldsmith's environment, live in memory
only, and are named, never shown: nothing here writes or logs a value.
validate/blockscan.py streams the image through ``NeedleSearch``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from builder.proxy import ProxyValue

MIN_NEEDLE = 8  # shorter strings match by chance in gigabytes of data
_KEEP_HITS = 1000


@dataclasses.dataclass(frozen=True)
class Needle:
    """A byte string that must not be anywhere on the disk.

    ``family`` and ``form`` name it in results and logs; ``value`` never leaves
    this process (it is left out of repr, so no traceback or log shows it).
    """

    family: str  # "builder key", "host secret DB_PASSWORD"
    form: str  # "raw", "base64 from byte 1, first half", "text"
    value: bytes = dataclasses.field(repr=False)
    secret: bool = False

    def __post_init__(self) -> None:
        # Leading and trailing NULs are dropped, so no match can run into a
        # hole (holes read as zeros and are never read), and no needle is only zeros.
        object.__setattr__(self, "value", self.value.strip(b"\0"))
        if len(self.value) < MIN_NEEDLE:
            raise ValueError(f"needle {self.name!r} is shorter than {MIN_NEEDLE} bytes")

    @property
    def name(self) -> str:
        return f"{self.family} ({self.form})"


def encoded_needles(family: str, raw: bytes, *, secret: bool = False) -> list[Needle]:
    """``raw`` as bytes and as base64 wherever it sits in a longer encoded blob.

    Base64 encodes groups of three bytes, so the same bytes read differently
    depending on their offset: one encoding per offset (0, 1, 2) covers them
    all. Long encodings are also split in halves, so a line break inside a
    PEM block (every 64 or 70 characters) hides at most one half.
    """
    forms = [("raw", raw)]
    for shift in range(3):
        body = raw[shift:]
        text = base64.b64encode(body[: len(body) - len(body) % 3])
        if len(text) >= 4 * MIN_NEEDLE:
            half = len(text) // 2
            forms.append((f"base64 from byte {shift}, first half", text[:half]))
            forms.append((f"base64 from byte {shift}, second half", text[half:]))
        elif len(text) >= MIN_NEEDLE:
            forms.append((f"base64 from byte {shift}", text))
    return [Needle(family, form, value, secret) for form, value in forms]


def secret_needles(name: str, value: str | bytes) -> list[Needle]:
    """Needles for one host secret the build used (kept in memory, never written)."""
    raw = value.encode() if isinstance(value, str) else value
    return encoded_needles(f"host secret {name}", raw, secret=True)


def _ssh_key_needles(family: str, line: str) -> list[Needle]:
    """An OpenSSH public key line: its key material, its fingerprint, its comment."""
    words = line.split()
    blob = base64.b64decode(words[1], validate=True)
    # The blob is a sequence of length-prefixed strings; the last one is the key.
    fields, at = [], 0
    while at + 4 <= len(blob):
        (size,) = struct.unpack_from(">I", blob, at)
        fields.append(blob[at + 4 : at + 4 + size])
        at += 4 + size
    needles = encoded_needles(family, fields[-1] if len(fields) >= 2 else blob)
    needles.append(Needle(family, "base64 key blob", words[1].encode()))
    digest = base64.b64encode(hashlib.sha256(blob).digest()).rstrip(b"=")
    needles.append(Needle(family, "SHA256 fingerprint", digest))
    if len(words) >= 3 and len(words[2]) >= MIN_NEEDLE:
        needles.append(Needle(family, "comment", words[2].encode()))
    return needles


def needles_from_build(build_vm: Mapping[str, Any]) -> tuple[list[Needle], list[str]]:
    """What build.json's ``build_vm`` lets us look for, and what it does not record."""
    needles: list[Needle] = []
    missing: list[str] = []
    for key, family in (("builder_key", "builder key"), ("host_key", "build host key")):
        line = str(build_vm.get(key) or "")
        try:
            needles += _ssh_key_needles(family, line)
        except (IndexError, ValueError):
            missing.append(family)
    for kind, fingerprint in sorted(dict(build_vm.get("host_keys") or {}).items()):
        value = str(fingerprint).removeprefix("SHA256:").encode()
        if len(value) >= MIN_NEEDLE:
            needles.append(Needle(f"build host key {kind}", "SHA256 fingerprint", value))
    machine_id = str(build_vm.get("machine_id") or "")
    if re.fullmatch(r"[0-9a-f]{32}", machine_id):
        needles.append(Needle("build machine-id", "text", machine_id.encode()))
        needles.append(Needle("build machine-id", "raw", bytes.fromhex(machine_id)))
        dashed = "-".join(
            machine_id[a:b] for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))
        )
        needles.append(Needle("build machine-id", "UUID", dashed.encode()))
    else:
        missing.append("build machine-id")
    instance = str(build_vm.get("instance_id") or "")
    if len(instance) >= MIN_NEEDLE:
        needles.append(Needle("seed instance id", "text", instance.encode()))
    else:
        missing.append("seed instance id")
    return needles, missing


def _unique(needles: Iterable[Needle]) -> list[Needle]:
    seen: dict[bytes, Needle] = {}
    for needle in needles:
        seen.setdefault(needle.value, needle)
    return list(seen.values())


class NeedleSearch:
    """Every needle over a stream of (offset, bytes) pieces, across piece seams."""

    def __init__(self, needles: Sequence[Needle]) -> None:
        self.needles = _unique(needles)
        self.keep = max((len(n.value) for n in self.needles), default=1) - 1
        self.tail = b""
        self.end = -1
        self.hits: list[tuple[Needle, int]] = []
        self.count = 0

    def _found(self, needle: Needle, offset: int) -> None:
        self.count += 1
        if len(self.hits) < _KEEP_HITS:
            self.hits.append((needle, offset))

    def feed(self, offset: int, data: bytes) -> None:
        if offset == self.end and self.tail:
            # Matches that start in the previous piece and end in this one.
            seam = self.tail + data[: self.keep]
            base, cut = offset - len(self.tail), len(self.tail)
            for needle in self.needles:
                i = seam.find(needle.value, max(0, cut - len(needle.value) + 1))
                while 0 <= i < cut:
                    self._found(needle, base + i)
                    i = seam.find(needle.value, i + 1)
        for needle in self.needles:
            i = data.find(needle.value)
            while i >= 0:
                self._found(needle, offset + i)
                i = data.find(needle.value, i + 1)
        self.tail = data[-self.keep :] if self.keep else b""
        self.end = offset + len(data)


def host_secret_needles(
    record: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[list[Needle], list[str]]:
    """Needles for the host secrets build.json says the provisioning steps were
    given (by name only), read from goldsmith's environment as the build read
    them; and, for each that cannot be searched for, why."""
    names: dict[str, None] = {}
    for step in record.get("provision") or ():
        if isinstance(step, Mapping):
            names.update(dict.fromkeys(str(n) for n in step.get("env_from_host") or ()))
    proxy = record.get("apt_proxy")
    proxy_name = proxy.get("env_from_host") if isinstance(proxy, Mapping) else None
    if isinstance(proxy_name, str):
        names[proxy_name] = None
    needles: list[Needle] = []
    unsearched: list[str] = []
    for name in names:
        value = environ.get(name)
        if value is None:
            unsearched.append(f"host secret {name} (not set in goldsmith's environment)")
            continue
        # The apt proxy's password is searched for alone too: apt or a log
        # could keep it without the rest of the URL.
        parts: tuple[str, ...] = (value,)
        if name == proxy_name:
            with contextlib.suppress(ValueError):  # not a URL: searched for whole
                parts = ProxyValue(value, ()).secrets
        for index, part in enumerate(parts):
            try:
                needles += secret_needles(name if index == 0 else f"{name} (password)", part)
            except ValueError:
                unsearched.append(f"host secret {name} (shorter than {MIN_NEEDLE} bytes)")
    return needles, unsearched
