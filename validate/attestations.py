"""The signed envelopes of one template, and the approvers who sign them.

An artifact folder holds the template statement (``manifest.dsse.json``) and,
beside it, attestations about the same image in formats other tools read:
the CycloneDX SBOM (``sbom.dsse.json``) and SLSA provenance
(``provenance.dsse.json``). Every envelope is signed by the same key(s).

A second approver adds a signature with ``goldsmith sign`` to what the first
one signed: the exact payload bytes of every envelope, never a re-made
statement, and only after checking that the statement still describes the
artifact as it is now (the image, build.json and validation.json). One key
signs once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import fcntl
import hashlib
import hmac
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from builder.atomic import sync_folder, write_atomically
from builder.errors import GoldsmithError, InputError
from builder.log import log
from hardening.strictdata import DataError, escape, loads_json, read_regular
from validate import provenance, sbom
from validate.dsse import (
    MAX_ENVELOPE_BYTES,
    PAYLOAD_TYPE_IN_TOTO,
    Envelope,
    add_signature,
    read_envelope,
    sign_envelope,
    verified_keyids,
)
from validate.keys import KeyType, PublicKey, SigningKey
from validate.manifest import (
    MANIFEST_NAME,
    SSH_SIGNATURE_NAME,
    BuildRecord,
    SigningError,
    encode_statement,
    format_time,
    ssh_sign,
)
from validate.results import ValidationRun
from validate.statement import STATEMENT_TYPE, decode_statement

SBOM_NAME = "sbom.cdx.json"  # the CycloneDX document itself, for tools that read files
SBOM_ENVELOPE_NAME = "sbom.dsse.json"
PROVENANCE_ENVELOPE_NAME = "provenance.dsse.json"
# Every envelope of a template, the template statement last: it names the
# others by digest, so it is written after them.
ENVELOPE_NAMES = (SBOM_ENVELOPE_NAME, PROVENANCE_ENVELOPE_NAME, MANIFEST_NAME)


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


@dataclasses.dataclass(frozen=True)
class Attachments:
    """The attestations signed with a new template statement."""

    bom: bytes  # sbom.cdx.json
    payloads: dict[str, bytes]  # envelope file name -> its in-toto statement

    def refs(self) -> list[dict[str, Any]]:
        """predicate.attestations: each envelope by its payload's digest, which
        stays the same however many approvers sign it."""
        kinds = {SBOM_ENVELOPE_NAME: sbom.PREDICATE_TYPE}
        kinds[PROVENANCE_ENVELOPE_NAME] = provenance.PREDICATE_TYPE
        return [
            {
                "name": name,
                "predicateType": kinds[name],
                "payloadDigest": {"sha256": hashlib.sha256(payload).hexdigest()},
            }
            for name, payload in self.payloads.items()
        ]

    def attach(self, statement: dict[str, Any]) -> None:
        """Name the attestations in the template statement (before it is signed)."""
        predicate = statement["predicate"]
        predicate["attestations"] = self.refs()
        predicate["sbom"]["cyclonedx"] = {
            "name": SBOM_NAME,
            "mediaType": sbom.MEDIA_TYPE,
            "specVersion": sbom.SPEC_VERSION,
            "digest": {"sha256": hashlib.sha256(self.bom).hexdigest()},
        }


def make_attachments(
    build: BuildRecord,
    validation: ValidationRun,
    statement: Mapping[str, Any],
    *,
    approved_at: datetime.datetime,
) -> Attachments:
    """The CycloneDX SBOM and the SLSA provenance about the statement's subjects."""
    subjects = statement["subject"]
    digest = subjects[0]["digest"]
    image = sbom.Image(
        build.template_name, build.template_version, digest["sha256"], digest["sha512"]
    )
    bom = sbom.make_bom(image, validation.packages, timestamp=format_time(approved_at))
    spec = provenance.locate_spec(build.spec_path, build.spec_sha256)
    predicates = {
        SBOM_ENVELOPE_NAME: (sbom.PREDICATE_TYPE, sbom.read_bom(bom)),
        PROVENANCE_ENVELOPE_NAME: (
            provenance.PREDICATE_TYPE,
            provenance.make_provenance(build, spec),
        ),
    }
    payloads = {
        name: encode_statement(
            {
                "_type": STATEMENT_TYPE,
                "subject": subjects,
                "predicateType": kind,
                "predicate": predicate,
            }
        )
        for name, (kind, predicate) in predicates.items()
    }
    return Attachments(bom, payloads)


def write_signed(
    artifact_dir: Path,
    statement: Mapping[str, Any],
    key: SigningKey,
    attachments: Attachments | None,
    *,
    ssh_key: Path | None,
) -> Path:
    """Sign the statement and its attestations with ``key`` and write them all;
    an old statement's attestations that this one lacks are removed."""
    files: dict[str, bytes] = {}
    if attachments is not None:
        files[SBOM_NAME] = attachments.bom
        for name, payload in attachments.payloads.items():
            files[name] = sign_envelope(PAYLOAD_TYPE_IN_TOTO, payload, [key]).to_json()
    files[MANIFEST_NAME] = sign_envelope(
        PAYLOAD_TYPE_IN_TOTO, encode_statement(statement), [key]
    ).to_json()
    drop = [n for n in (SBOM_NAME, *ENVELOPE_NAMES) if n not in files]
    write_envelopes(artifact_dir, files, ssh_key=ssh_key, drop=drop)
    return artifact_dir / MANIFEST_NAME


def signed_by(envelope: Envelope, public: PublicKey) -> bool:
    """True when the envelope holds a signature filed under this key's id, or
    one this key made under any id."""
    message = envelope.pae()
    return any(
        s.keyid == public.keyid or public.verify(s.sig, message) for s in envelope.signatures
    )


def _get(data: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _differences(signed: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """How the signed statement differs from one about the artifact as it is now."""
    problems = []
    if signed.get("subject") != now.get("subject"):
        subjects = signed.get("subject")
        first = subjects[0] if isinstance(subjects, list) and subjects else None
        shown = escape(str(_get(first, "digest", "sha256")), 80)
        image = _get(now["subject"][0], "digest", "sha256")
        problems.append(f"another image (sha256 {shown[:16]}..., the image has {image[:16]}...)")
    for record in ("build", "validation"):
        path = (record, "record", "digest", "sha256")
        if _get(signed.get("predicate"), *path) != _get(now.get("predicate"), *path):
            problems.append(f"another {record}.json than the one in the folder")
    return problems


def _check_unchanged_terms(
    manifest: Path, statement: Mapping[str, Any], current: Current, now: datetime.datetime
) -> None:
    """A second approver signs the statement as it stands: options that would
    change it are refused rather than silently ignored."""
    approval = _get(statement, "predicate", "approval")
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
        recorded = _get(statement, "predicate", "previousManifest", "digest", "sha256")
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
    bom_digest = _get(statement, "predicate", "sbom", "cyclonedx", "digest", "sha256")
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


def attestation_refs(statement: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """envelope file name -> (predicateType, payload sha256), as the template
    statement lists them; entries that are not well formed are left out (a
    verifier then treats the file as not named)."""
    refs: dict[str, tuple[str, str]] = {}
    listed = _get(statement, "predicate", "attestations")
    for item in listed if isinstance(listed, list) else []:
        name = _get(item, "name")
        kind = _get(item, "predicateType")
        digest = _get(item, "payloadDigest", "sha256")
        if isinstance(name, str) and isinstance(kind, str) and isinstance(digest, str):
            refs[name] = (kind, digest)
    return refs


def write_envelopes(
    artifact_dir: Path,
    files: Mapping[str, bytes],
    *,
    ssh_key: Path | None,
    drop: Sequence[str] = (),
) -> None:
    """Write the files into the artifact folder, each renamed into place from a
    scratch folder, the manifest last; ``drop`` names files to remove (an old
    statement's attestations that a new one does not have).

    The OpenSSH signature covers the manifest file's bytes, which change with
    every added signature: it is made anew with ``ssh_key``, or removed.
    """
    with tempfile.TemporaryDirectory(dir=artifact_dir, prefix=".manifest-") as scratch:
        staged = {}
        for name, data in files.items():
            path = Path(scratch) / name
            write_atomically(path, data, mode=0o644)
            staged[name] = path
        if ssh_key is not None and MANIFEST_NAME in staged:
            ssh_sign(staged[MANIFEST_NAME], ssh_key)
        for name in drop:
            (artifact_dir / name).unlink(missing_ok=True)
        for name in sorted(staged, key=lambda n: n == MANIFEST_NAME):
            os.replace(staged[name], artifact_dir / name)
        if MANIFEST_NAME in staged:
            final_sig = artifact_dir / SSH_SIGNATURE_NAME
            if ssh_key is not None:
                os.replace(Path(scratch) / SSH_SIGNATURE_NAME, final_sig)
            elif final_sig.exists():
                log.warning("removed %s: it signed the manifest as it was", final_sig)
                final_sig.unlink()
        sync_folder(artifact_dir)


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


# --- verifying the attestations beside a manifest --------------------------------------


class AttestationError(GoldsmithError):
    """An attestation beside a trusted manifest is not trusted (exit code 1)."""


@dataclasses.dataclass(frozen=True)
class Attested:
    name: str  # the envelope's file name
    predicate_type: str
    present: bool  # False: the manifest names it, the folder lacks it
    signers: int = 0  # distinct trusted, unrevoked keys that signed it
    named: bool = True  # the manifest names it by its payload's digest

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"predicateType": self.predicate_type}

    def describe(self) -> str:
        if not self.present:
            return f"{self.name} absent (named by the manifest)"
        named = "" if self.named else ", not named by the manifest"
        return f"{self.name} verified ({self.signers} key(s){named})"


_KINDS = {
    SBOM_ENVELOPE_NAME: sbom.PREDICATE_TYPE,
    PROVENANCE_ENVELOPE_NAME: provenance.PREDICATE_TYPE,
}


def verify_attestations(
    folder: Path,
    payload: bytes,
    trusted: Sequence[PublicKey],
    *,
    threshold: int,
    revoked: frozenset[str] = frozenset(),
) -> tuple[Attested, ...]:
    """Check the SBOM and provenance envelopes in ``folder`` against the
    verified template statement ``payload``: the same keys and threshold, the
    payload digest the statement names, the very same subjects (so the same
    image digests), and the SBOM file's digest. An absent file is reported,
    not refused: it takes nothing away from what the manifest proves."""
    statement = loads_json(payload)  # verified and read already; cannot fail here
    refs = attestation_refs(statement)
    found = []
    for name, kind in _KINDS.items():
        path = folder / name
        ref = refs.get(name)
        if not path.exists():
            if ref is not None:
                found.append(Attested(name, ref[0], present=False))
            continue
        try:
            envelope, _ = read_envelope(path, expected="a DSSE envelope")
        except InputError as exc:
            raise AttestationError(exc.message) from None
        if envelope.payload_type != PAYLOAD_TYPE_IN_TOTO:
            raise AttestationError(f"{path}: payloadType is not {PAYLOAD_TYPE_IN_TOTO!r}")
        signers = verified_keyids(envelope, trusted) - revoked
        if len(signers) < threshold:
            raise AttestationError(
                f"{path}: {len(signers)} distinct trusted key(s) signed; "
                f"the threshold is {threshold}"
            )
        digest = hashlib.sha256(envelope.payload).hexdigest()
        # As bytes: compare_digest refuses str with non-ASCII characters (a
        # TypeError), and the manifest's digest may hold any text.
        if ref is not None and not hmac.compare_digest(ref[1].encode(), digest.encode()):
            raise AttestationError(
                f"{path}: its payload (sha256 {digest[:16]}...) is not the one the manifest "
                f"names ({escape(ref[1], 80)[:16]}...)"
            )
        try:
            doc = loads_json(envelope.payload)
        except DataError as exc:
            raise AttestationError(f"{path}: the payload is not a JSON statement ({exc})") from None
        if _get(doc, "_type") != STATEMENT_TYPE or _get(doc, "predicateType") != kind:
            raise AttestationError(f"{path}: expected an in-toto statement of type {kind}")
        if doc.get("subject") != statement.get("subject"):
            raise AttestationError(
                f"{path}: its subjects are not the manifest's: it is about another image"
            )
        if name == SBOM_ENVELOPE_NAME:
            _check_bom_file(folder, statement)
        found.append(Attested(name, kind, True, len(signers), named=ref is not None))
    return tuple(found)


def _check_bom_file(folder: Path, statement: Mapping[str, Any]) -> None:
    path = folder / SBOM_NAME
    want = _get(statement, "predicate", "sbom", "cyclonedx", "digest", "sha256")
    if want is None or not path.exists():
        return
    try:
        data = read_regular(path, MAX_ENVELOPE_BYTES)
    except (OSError, DataError) as exc:
        raise AttestationError(f"{path}: cannot be read ({exc})") from None
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest().encode(), str(want).encode()):
        raise AttestationError(f"{path}: its sha256 is not the one the manifest names")
