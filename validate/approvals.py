"""The approvers of a template: a second signature on what the first one signed, and who signed.

A second approver adds a signature with ``goldsmith sign`` to what the first
one signed: the exact payload bytes of every envelope, never a re-made
statement, and only after checking that the statement still describes the
artifact as it is now (the image, build.json and validation.json). One key
signs once. ``list_signers`` shows every signature on every envelope, and
whether a given key verifies it. The envelopes themselves are
validate/attestations.py's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import fcntl
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from builder.errors import InputError
from builder.log import log
from hardening.strictdata import DataError, escape, read_regular
from validate.attestations import (
    ENVELOPE_NAMES,
    SBOM_NAME,
    attestation_refs,
    get_field,
    write_envelopes,
)
from validate.dsse import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    add_signature,
    read_envelope,
)
from validate.keys import KeyType, PublicKey, SigningKey
from validate.manifest import (
    MANIFEST_NAME,
    SigningError,
)
from validate.statement import decode_statement


class SignMode(enum.StrEnum):
    add = "add"  # `goldsmith sign`: a first statement, or one more signature on it
    fresh = "fresh"  # a new statement; the old envelopes and their signatures go
    renew = "renew"  # release: a stale statement is replaced, a current one kept or co-signed


@dataclasses.dataclass(frozen=True)
class Current:
    """What the statement about the artifact as it is now would say, for
    comparing with the one already signed."""

    statement: Mapping[str, Any]  # the statement a first signer would sign now
    valid_for_days: int | None  # as asked on the command line; None: not asked
    previous_manifest_sha256: str | None


@contextlib.contextmanager
def locked_folder(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the artifact folder while its envelopes are
    read, signed and replaced: two approvers signing at the same moment must
    not each write an envelope holding only their own signature."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def add_approval(
    artifact_dir: Path,
    key: SigningKey,
    current: Current,
    *,
    mode: SignMode,
    ssh_key: Path | None,
    now: datetime.datetime,
) -> Path | None:
    """Add ``key``'s signature to every envelope of the artifact.

    None when the manifest no longer describes the artifact and ``mode`` is
    renew (the caller then signs a new statement); SigningError when it does
    not and ``mode`` is add, or when ``key`` has signed already.
    """
    manifest = artifact_dir / MANIFEST_NAME
    envelope, _ = read_envelope(manifest, expected="a manifest (DSSE envelope)")
    statement = decode_statement(manifest, envelope)
    if problems := _differences(statement, current.statement):
        if mode is SignMode.renew:
            log.info("%s describes %s; signing a new statement", manifest, problems[0])
            return None
        raise SigningError(
            f"{manifest}: the signed statement describes {'; '.join(problems)}; "
            "refusing to add a signature to it",
            hint="`goldsmith sign --replace` signs a new statement about the artifact as it "
            "is now (the signatures on the old one are dropped)",
        )
    if signed_by(envelope, key.public):
        if mode is SignMode.renew:
            log.info("%s is already signed by key %s", manifest, key.keyid)
            return manifest
        raise SigningError(
            f"{manifest}: already signed by key {key.keyid}; one key approves once",
            hint="a second approval needs a second key",
        )
    _check_unchanged_terms(manifest, statement, current, now)
    envelopes = {MANIFEST_NAME: envelope}
    for name in ENVELOPE_NAMES[:-1]:
        if (artifact_dir / name).exists():
            other, _ = read_envelope(artifact_dir / name, expected="a DSSE envelope")
            if signed_by(other, key.public):
                raise SigningError(f"{artifact_dir / name}: already signed by key {key.keyid}")
            envelopes[name] = other
    check_attestations_bound(artifact_dir, statement, envelopes)
    signed: dict[str, Envelope] = {}
    for name, old in envelopes.items():
        try:
            new = add_signature(old, key)
        except ValueError as exc:
            raise SigningError(f"{artifact_dir / name}: {exc}") from None
        # A token or a key file that signs wrongly must not leave an envelope
        # that no verifier accepts: check the new signature before writing it.
        if not key.public.verify(new.signatures[-1].sig, new.pae()):
            raise SigningError(f"{artifact_dir / name}: the new signature does not verify")
        signed[name] = new
    write_envelopes(artifact_dir, {n: e.to_json() for n, e in signed.items()}, ssh_key=ssh_key)
    log.info(
        "added a signature by key %s (%s) to %s; %d signature(s) now",
        key.keyid,
        key.type,
        ", ".join(signed),
        len(signed[MANIFEST_NAME].signatures),
    )
    return manifest


def signed_by(envelope: Envelope, public: PublicKey) -> bool:
    """True when the envelope holds a signature filed under this key's id, or
    one this key made under any id."""
    message = envelope.pae()
    return any(
        s.keyid == public.keyid or public.verify(s.sig, message) for s in envelope.signatures
    )


def _differences(signed: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """How the signed statement differs from one about the artifact as it is now."""
    problems = []
    if signed.get("subject") != now.get("subject"):
        subjects = signed.get("subject")
        first = subjects[0] if isinstance(subjects, list) and subjects else None
        shown = escape(str(get_field(first, "digest", "sha256")), 80)
        image = get_field(now["subject"][0], "digest", "sha256")
        problems.append(f"another image (sha256 {shown[:16]}..., the image has {image[:16]}...)")
    for record in ("build", "validation"):
        path = (record, "record", "digest", "sha256")
        if get_field(signed.get("predicate"), *path) != get_field(now.get("predicate"), *path):
            problems.append(f"another {record}.json than the one in the folder")
    return problems


def _check_unchanged_terms(
    manifest: Path, statement: Mapping[str, Any], current: Current, now: datetime.datetime
) -> None:
    """A second approver signs the statement as it stands: options that would
    change it are refused rather than silently ignored."""
    approval = get_field(statement, "predicate", "approval")
    if not isinstance(approval, dict):
        approval = {}
    try:
        start = datetime.datetime.fromisoformat(str(approval.get("time")))
        until = datetime.datetime.fromisoformat(str(approval.get("validUntil")))
    except ValueError:
        raise InputError(
            manifest, "payload.predicate.approval", "expected RFC 3339 times"
        ) from None
    # With an offset: a time without one cannot be subtracted from one with.
    if start.tzinfo is None:
        raise InputError(manifest, "payload.predicate.approval.time", "expected an RFC 3339 time")
    if until.tzinfo is None or until <= now:
        raise SigningError(
            f"{manifest}: the statement expired at {escape(str(approval.get('validUntil')))}; "
            "refusing to add a signature to it",
            hint="`goldsmith sign --replace` signs a new statement",
        )
    days = (until - start).total_seconds() / 86400
    if current.valid_for_days is not None and days != current.valid_for_days:
        raise SigningError(
            f"{manifest}: the statement is valid for {days:g} days, not {current.valid_for_days} "
            "(--valid-for); a second approver signs the statement as it stands"
        )
    if current.previous_manifest_sha256 is not None:
        recorded = get_field(statement, "predicate", "previousManifest", "digest", "sha256")
        if recorded != current.previous_manifest_sha256:
            raise SigningError(
                f"{manifest}: the statement records another previous manifest "
                f"({escape(str(recorded), 80)}) than --previous; a second approver signs "
                "the statement as it stands"
            )


def _read_bom(path: Path) -> bytes:
    try:
        return read_regular(path, MAX_ENVELOPE_BYTES)
    except (OSError, DataError) as exc:
        raise SigningError(f"{path}: cannot be read ({exc})") from None


def check_attestations_bound(
    artifact_dir: Path, statement: Mapping[str, Any], envelopes: Mapping[str, Envelope]
) -> None:
    """Each attestation envelope must be the one the template statement names
    (by the digest of its payload); refused otherwise, before anyone signs it."""
    refs = attestation_refs(statement)
    bom_path = artifact_dir / SBOM_NAME
    bom_digest = get_field(statement, "predicate", "sbom", "cyclonedx", "digest", "sha256")
    if (
        bom_digest is not None
        and bom_path.exists()
        # read_regular: a FIFO there would block the read for ever.
        and hashlib.sha256(_read_bom(bom_path)).hexdigest() != bom_digest
    ):
        raise SigningError(
            f"{bom_path}: not the SBOM {MANIFEST_NAME} names; refusing to sign",
            hint="`goldsmith sign --replace` signs a new statement and attestations",
        )
    for name, envelope in envelopes.items():
        if name == MANIFEST_NAME:
            continue
        want = refs.get(name)
        got = hashlib.sha256(envelope.payload).hexdigest()
        if want is None or want[1] != got:
            raise SigningError(
                f"{artifact_dir / name}: not the attestation {MANIFEST_NAME} names "
                f"(its payload has sha256 {got[:16]}...); refusing to sign it",
                hint="`goldsmith sign --replace` signs a new statement and attestations",
            )


# --- who signed ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SignerRow:
    envelope: str  # the envelope's file name
    keyid: str  # as the signature files it (a hint, escaped for display by the caller)
    key_type: str  # "ed25519", "p256", "ecdsa" or "unknown"
    type_from: str  # "key": from a given public key; "signature": guessed from its shape
    verifies: bool | None  # None: no given key has this keyid

    def to_dict(self) -> dict[str, Any]:
        return {
            "envelope": self.envelope,
            "keyid": self.keyid,
            "type": self.key_type,
            "typeFrom": self.type_from,
            "verifies": self.verifies,
        }


def list_signers(artifact_dir: Path, keys: Sequence[PublicKey]) -> list[SignerRow]:
    """Every signature on every envelope in the folder, and whether a given key verifies it."""
    if not artifact_dir.is_dir():
        raise InputError(artifact_dir, None, "expected an artifact folder")
    if not (artifact_dir / MANIFEST_NAME).exists():
        raise InputError(artifact_dir / MANIFEST_NAME, None, "not found; the artifact is unsigned")
    rows = []
    for name in (MANIFEST_NAME, *ENVELOPE_NAMES[:-1]):
        path = artifact_dir / name
        if name != MANIFEST_NAME and not path.exists():
            continue
        envelope, _ = read_envelope(path)
        message = envelope.pae()
        for signature in envelope.signatures:
            candidates = [k for k in keys if signature.keyid in ("", k.keyid)]
            verifying = [k for k in candidates if k.verify(signature.sig, message)]
            known = verifying or [k for k in candidates if k.keyid == signature.keyid]
            rows.append(
                SignerRow(
                    envelope=name,
                    keyid=signature.keyid,
                    key_type=str(known[0].type) if known else guess_key_type(signature.sig),
                    type_from="key" if known else "signature",
                    verifies=bool(verifying) if known or verifying else None,
                )
            )
    return rows


def guess_key_type(signature: bytes) -> str:
    """The key type a signature's shape suggests: Ed25519 signatures are 64
    raw bytes, ECDSA ones a DER SEQUENCE of two integers."""
    if len(signature) == 64:
        return str(KeyType.ed25519)
    if len(signature) >= 8 and signature[0] == 0x30 and signature[1] == len(signature) - 2:
        return "p256" if len(signature) <= 72 else "ecdsa"
    return "unknown"
