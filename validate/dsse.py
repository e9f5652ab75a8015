"""DSSE v1 envelopes: the signed wrapper around a manifest's in-toto statement.

The signature covers PAE(payloadType, payload), never the JSON of the envelope,
so verification decodes the payload bytes exactly as they travel and checks the
signature over those; nothing is parsed, normalised or re-serialised first.
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

PAYLOAD_TYPE_IN_TOTO = "application/vnd.in-toto+json"
# A manifest with a full SBOM is well under a megabyte; a far larger file is not one
# of ours and is refused before it is read into memory.
MAX_ENVELOPE_BYTES = 64 << 20


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


def verified_keyids(envelope: Envelope, verifiers: Iterable[Verifier]) -> frozenset[str]:
    """The keyids of the trusted keys that signed this envelope.

    Each key counts once however many signatures it made or however often it was
    listed, which is what a threshold of distinct signers needs.
    """
    message = envelope.pae()
    found: set[str] = set()
    for verifier in verifiers:
        if verifier.keyid in found:
            continue
        if any(verifier.verify(s.sig, message) for s in envelope.signatures):
            found.add(verifier.keyid)
    return frozenset(found)


def parse_envelope(data: bytes, source: Path | str) -> Envelope:
    """Parse envelope bytes read from ``source``; any defect is an InputError naming it."""
    expected = "a DSSE envelope (JSON object with payloadType, payload, signatures)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            source, None, f"is not JSON (not UTF-8 text); expected {expected}"
        ) from None
    stripped = text.strip()
    try:
        doc = json.loads(stripped)
    except json.JSONDecodeError as exc:
        if not stripped.startswith(("{", "[")):
            raise InputError(source, None, f"is not JSON; expected {expected}") from None
        if not stripped.endswith(("}", "]")):
            raise InputError(
                source, None, f"ends before the JSON object is complete (truncated?): {exc.msg}"
            ) from None
        raise InputError(
            source, None, f"is malformed JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(doc, dict):
        raise InputError(source, None, f"expected {expected}, found JSON {type(doc).__name__}")

    payload_type = doc.get("payloadType")
    if not isinstance(payload_type, str) or not payload_type:
        raise InputError(source, "payloadType", "expected a non-empty string")
    payload_text = doc.get("payload")
    if not isinstance(payload_text, str):
        raise InputError(source, "payload", "expected a base64 string")
    payload = _decode_base64(payload_text, source, "payload")

    raw_signatures = doc.get("signatures")
    if not isinstance(raw_signatures, list) or not raw_signatures:
        raise InputError(source, "signatures", "expected a non-empty list")
    signatures = []
    for i, raw in enumerate(raw_signatures):
        field = f"signatures[{i}]"
        if not isinstance(raw, dict):
            raise InputError(source, field, "expected an object with keyid and sig")
        keyid = raw.get("keyid", "")
        if not isinstance(keyid, str):
            raise InputError(source, f"{field}.keyid", "expected a string")
        sig_text = raw.get("sig")
        if not isinstance(sig_text, str) or not sig_text:
            raise InputError(source, f"{field}.sig", "expected a base64 string")
        signatures.append(Signature(keyid, _decode_base64(sig_text, source, f"{field}.sig")))
    return Envelope(payload_type, payload, tuple(signatures))


def load_envelope(path: Path) -> Envelope:
    return read_envelope(path)[0]


def read_envelope(path: Path, *, expected: str = "a DSSE envelope file") -> tuple[Envelope, str]:
    """The envelope in ``path`` (parsed, NOT verified) and the sha256 hex of the
    file's bytes, which is how a later manifest's previousManifest names it.

    ``expected`` names what the file should be in the message for a missing one.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ENVELOPE_BYTES + 1)
    except FileNotFoundError:
        raise InputError(path, None, f"not found; expected {expected}") from None
    except IsADirectoryError:
        raise InputError(path, None, f"is a directory; expected {expected}") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot be read ({exc.strerror})") from None
    if len(data) > MAX_ENVELOPE_BYTES:
        raise InputError(path, None, f"is larger than {MAX_ENVELOPE_BYTES} bytes; not a manifest")
    return parse_envelope(data, path), hashlib.sha256(data).hexdigest()


def _decode_base64(text: str, source: Path | str, field: str) -> bytes:
    # DSSE allows standard or URL-safe base64; padding is restored if it was dropped.
    padded = text + "=" * (-len(text) % 4)
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    raise InputError(source, field, "expected base64 (standard or URL-safe alphabet)")
