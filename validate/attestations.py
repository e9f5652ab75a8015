"""The signed envelopes of one template: the statement and its attestations.

An artifact folder holds the template statement (``manifest.dsse.json``) and,
beside it, attestations about the same image in formats other tools read:
the CycloneDX SBOM (``sbom.dsse.json``) and SLSA provenance
(``provenance.dsse.json``). Every envelope is signed by the same key(s).

The statement is signed here with its attestations (``write_signed``) and
written whole (``write_envelopes``); a trusted manifest's attestations are
checked by ``verify_attestations``. Adding an approver's signature and listing
the signers is validate/approvals.py's.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import os
import tempfile
from collections.abc import Mapping, Sequence
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
    read_envelope,
    sign_envelope,
    verified_keyids,
)
from validate.keys import PublicKey, SigningKey
from validate.manifest import (
    MANIFEST_NAME,
    SSH_SIGNATURE_NAME,
    BuildRecord,
    encode_statement,
    format_time,
    ssh_sign,
)
from validate.results import ValidationRun
from validate.statement import STATEMENT_TYPE

SBOM_NAME = "sbom.cdx.json"  # the CycloneDX document itself, for tools that read files
SBOM_ENVELOPE_NAME = "sbom.dsse.json"
PROVENANCE_ENVELOPE_NAME = "provenance.dsse.json"
# Every envelope of a template, the template statement last: it names the
# others by digest, so it is written after them.
ENVELOPE_NAMES = (SBOM_ENVELOPE_NAME, PROVENANCE_ENVELOPE_NAME, MANIFEST_NAME)


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


def get_field(data: Any, *path: str) -> Any:
    """The value at ``path`` in nested JSON objects; None where one is missing
    or is no object (a statement read here is read as data, never trusted)."""
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def attestation_refs(statement: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """envelope file name -> (predicateType, payload sha256), as the template
    statement lists them; entries that are not well formed are left out (a
    verifier then treats the file as not named)."""
    refs: dict[str, tuple[str, str]] = {}
    listed = get_field(statement, "predicate", "attestations")
    for item in listed if isinstance(listed, list) else []:
        name = get_field(item, "name")
        kind = get_field(item, "predicateType")
        digest = get_field(item, "payloadDigest", "sha256")
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
        if get_field(doc, "_type") != STATEMENT_TYPE or get_field(doc, "predicateType") != kind:
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
    want = get_field(statement, "predicate", "sbom", "cyclonedx", "digest", "sha256")
    if want is None or not path.exists():
        return
    try:
        data = read_regular(path, MAX_ENVELOPE_BYTES)
    except (OSError, DataError) as exc:
        raise AttestationError(f"{path}: cannot be read ({exc})") from None
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest().encode(), str(want).encode()):
        raise AttestationError(f"{path}: its sha256 is not the one the manifest names")
