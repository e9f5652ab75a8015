"""DSSE v1 envelopes: the signed wrapper around a manifest's in-toto statement.

The signature covers PAE(payloadType, payload), never the JSON of the envelope,
so verification decodes the payload bytes exactly as they travel and checks the
signature over those; nothing is parsed, normalised or re-serialised first.

The envelope's JSON is read under the strict rules of ``hardening.strictdata``
(no duplicate keys, bounded depth and integers, valid Unicode): a verifier that
reads the first of two ``payload`` keys must never see another statement than
the one goldsmith checked. Its base64 must be canonical in one alphabet, and
the signatures are counted (and their keyids compared) before any is decoded
or checked, so a flood of bogus signatures costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from builder.errors import InputError
from hardening.strictdata import DataError, decode_text, escape, loads_json, read_regular

PAYLOAD_TYPE_IN_TOTO = "application/vnd.in-toto+json"
# A manifest with a full SBOM is well under a megabyte; a far larger file is not one
# of ours and is refused before it is read into memory.
MAX_ENVELOPE_BYTES = 64 << 20
# No policy needs more distinct signers than this; more signatures than this are
# refused before any base64 is decoded or any signature checked (a verifier
# trying N keys against M signatures does N*M checks).
MAX_SIGNATURES = 16
# An Ed25519 signature is 64 bytes, a DER P-256 one at most 72; room for others.
MAX_SIGNATURE_TEXT = 1024
MAX_KEYID = 256
MAX_PAYLOAD_TYPE = 256
# The most "{" a valid envelope can hold: its own, one per signature, and any
# inside the strings that may hold them (payloadType and keyids; base64 cannot).
# Counting them is a byte scan, so a flood of signature objects is refused
# before the JSON parser builds a single one.
_MAX_BRACES = 1 + MAX_SIGNATURES + MAX_PAYLOAD_TYPE + MAX_SIGNATURES * MAX_KEYID


class EnvelopeError(InputError):
    """The envelope's content is malformed or ambiguous (exit code 2 for readers
    that only decode it; ``goldsmith verify`` reports it as not trusted)."""


class Signer(Protocol):
    @property
    def keyid(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    @property
    def keyid(self) -> str: ...

    def verify(self, signature: bytes, data: bytes) -> bool: ...


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.

    Lengths are byte counts in ASCII decimal, so neither field can bleed into the other.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclasses.dataclass(frozen=True)
class Signature:
    keyid: str  # a hint only: verification tries every trusted key, whatever this says
    sig: bytes


@dataclasses.dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes  # the exact bytes that were signed
    signatures: tuple[Signature, ...]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8")


def sign_envelope(payload_type: str, payload: bytes, signers: Sequence[Signer]) -> Envelope:
    if not signers:
        raise ValueError("a DSSE envelope needs at least one signer")
    message = pae(payload_type, payload)
    signatures = tuple(Signature(s.keyid, s.sign(message)) for s in signers)
    return Envelope(payload_type, payload, signatures)


def add_signature(envelope: Envelope, signer: Signer) -> Envelope:
    """The envelope with one more signature over the very same payload bytes.

    A second approver signs what the first one signed, byte for byte: the
    payload is never decoded and re-encoded here. One key signs once; a
    keyid already present is refused (as ``parse_envelope`` would refuse the
    result).
    """
    if any(s.keyid == signer.keyid for s in envelope.signatures):
        raise ValueError(f"the envelope already holds a signature under keyid {signer.keyid}")
    if len(envelope.signatures) >= MAX_SIGNATURES:
        raise ValueError(f"the envelope already holds {MAX_SIGNATURES} signatures, the most read")
    signature = Signature(signer.keyid, signer.sign(envelope.pae()))
    return dataclasses.replace(envelope, signatures=(*envelope.signatures, signature))


def verified_keyids(envelope: Envelope, verifiers: Iterable[Verifier]) -> frozenset[str]:
    """The keyids of the trusted keys that signed this envelope.

    Each key counts once however many signatures it made or however often it was
    listed, which is what a threshold of distinct signers needs. A signature
    counts for a key only if it names that key's keyid or none: a signature
    filed under another key's name is one that a verifier looking keys up by
    keyid would read differently, so it is not counted at all.
    """
    message = envelope.pae()
    found: set[str] = set()
    for verifier in verifiers:
        if verifier.keyid in found:
            continue
        if any(
            s.keyid in ("", verifier.keyid) and verifier.verify(s.sig, message)
            for s in envelope.signatures
        ):
            found.add(verifier.keyid)
    return frozenset(found)


def parse_envelope(data: bytes, source: Path | str) -> Envelope:
    """Parse envelope bytes read from ``source``; any defect is an EnvelopeError naming it."""
    expected = "a DSSE envelope (JSON object with payloadType, payload, signatures)"
    if data.count(b"{") > _MAX_BRACES:
        raise EnvelopeError(
            source,
            "signatures",
            f"more objects than an envelope of at most {MAX_SIGNATURES} signatures holds",
        )
    try:
        text = decode_text(data)
    except DataError:
        raise EnvelopeError(
            source, None, f"is not JSON (not UTF-8 text); expected {expected}"
        ) from None
    stripped = text.strip()
    try:
        doc = loads_json(stripped)
    except DataError as exc:
        message = str(exc).removeprefix("not valid JSON: ")
        if str(exc).startswith("not valid JSON"):
            if not stripped.startswith(("{", "[")):
                raise EnvelopeError(source, None, f"is not JSON; expected {expected}") from None
            if not stripped.endswith(("}", "]")):
                raise EnvelopeError(
                    source, None, f"ends before the JSON object is complete (truncated?): {message}"
                ) from None
            raise EnvelopeError(source, None, f"is malformed JSON ({message})") from None
        raise EnvelopeError(source, None, f"refused: {message}") from None
    if not isinstance(doc, dict):
        raise EnvelopeError(source, None, f"expected {expected}, found JSON {type(doc).__name__}")
    for key in doc:
        if key not in ("payloadType", "payload", "signatures"):
            # Unknown fields are not signed; refusing them keeps two readers from
            # disagreeing about what an extension field means.
            raise EnvelopeError(source, escape(key), "unknown envelope field")

    payload_type = doc.get("payloadType")
    if not isinstance(payload_type, str) or not 0 < len(payload_type) <= MAX_PAYLOAD_TYPE:
        raise EnvelopeError(
            source,
            "payloadType",
            f"expected a non-empty string of at most {MAX_PAYLOAD_TYPE} characters",
        )
    payload_text = doc.get("payload")
    if not isinstance(payload_text, str):
        raise EnvelopeError(source, "payload", "expected a base64 string")

    raw_signatures = doc.get("signatures")
    if not isinstance(raw_signatures, list) or not raw_signatures:
        raise EnvelopeError(source, "signatures", "expected a non-empty list")
    if len(raw_signatures) > MAX_SIGNATURES:
        raise EnvelopeError(
            source,
            "signatures",
            f"{len(raw_signatures)} signatures; at most {MAX_SIGNATURES} are read",
        )
    seen: set[str] = set()
    pending: list[tuple[str, str, str]] = []
    for i, raw in enumerate(raw_signatures):
        field = f"signatures[{i}]"
        if not isinstance(raw, dict):
            raise EnvelopeError(source, field, "expected an object with keyid and sig")
        for key in raw:
            if key not in ("keyid", "sig"):
                raise EnvelopeError(source, f"{field}.{escape(key)}", "unknown signature field")
        keyid = raw.get("keyid", "")
        if not isinstance(keyid, str) or len(keyid) > MAX_KEYID:
            raise EnvelopeError(
                source, f"{field}.keyid", f"expected a string of at most {MAX_KEYID} characters"
            )
        if keyid in seen:
            # One key, one signature: a repeated keyid is either a mistake or an
            # attempt to make one signer look like several.
            raise EnvelopeError(source, f"{field}.keyid", f"duplicate keyid {escape(repr(keyid))}")
        seen.add(keyid)
        sig_text = raw.get("sig")
        if not isinstance(sig_text, str) or not sig_text or len(sig_text) > MAX_SIGNATURE_TEXT:
            raise EnvelopeError(source, f"{field}.sig", "expected a base64 string")
        pending.append((keyid, sig_text, f"{field}.sig"))
    payload = _decode_base64(payload_text, source, "payload")
    signatures = tuple(
        Signature(keyid, _decode_base64(sig_text, source, field))
        for keyid, sig_text, field in pending
    )
    return Envelope(payload_type, payload, signatures)


def load_envelope(path: Path) -> Envelope:
    return read_envelope(path)[0]


def read_envelope(path: Path, *, expected: str = "a DSSE envelope file") -> tuple[Envelope, str]:
    """The envelope in ``path`` (parsed, NOT verified) and the sha256 hex of the
    file's bytes, which is how a later manifest's previousManifest names it.

    ``expected`` names what the file should be in the message for a missing one.
    The file must be a regular file (a FIFO or a device would hang or never end);
    problems reading it are InputError, problems in what it says EnvelopeError.
    """
    try:
        data = read_regular(path, MAX_ENVELOPE_BYTES)
    except FileNotFoundError:
        raise InputError(path, None, f"not found; expected {expected}") from None
    except IsADirectoryError:
        raise InputError(path, None, f"is a directory; expected {expected}") from None
    except DataError as exc:
        if path.is_dir():
            raise InputError(path, None, f"is a directory; expected {expected}") from None
        raise InputError(path, None, f"{exc}; expected {expected}") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot be read ({exc.strerror})") from None
    return parse_envelope(data, path), hashlib.sha256(data).hexdigest()


_STANDARD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_URL_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _decode_base64(text: str, source: Path | str, field: str) -> bytes:
    """DSSE allows standard or URL-safe base64, padded or not. Anything else is
    refused: mixed alphabets, whitespace, stray padding and non-zero trailing bits
    all decode to the same bytes in some decoders and fail in others, and one
    signature must not travel in many envelopes that different tools read apart."""
    problem = EnvelopeError(
        source, field, "expected canonical base64 (standard or URL-safe alphabet)"
    )
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise problem from None
    body = raw.rstrip(b"=")
    padding = len(raw) - len(body)
    if padding and (len(raw) % 4 or padding > 2):
        raise problem
    url_safe = bool(body.translate(None, _STANDARD))
    alphabet = _URL_SAFE if url_safe else _STANDARD
    if body.translate(None, alphabet) or len(body) % 4 == 1:
        raise problem
    padded = body + b"=" * (-len(body) % 4)
    try:
        decoded = base64.b64decode(padded, altchars=b"-_" if url_safe else None, validate=True)
    except (binascii.Error, ValueError):
        raise problem from None
    encode = base64.urlsafe_b64encode if url_safe else base64.b64encode
    if encode(decoded).rstrip(b"=") != body:  # non-zero bits past the last byte
        raise problem
    return decoded
