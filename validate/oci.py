"""An OCI registry as the shelf: ``push`` a signed template, ``pull`` it back verified.

A template is an OCI artifact (an image manifest with ``artifactType``
``application/vnd.goldsmith.template.v1`` and the empty config): one layer
per disk image and record, each named by its ``org.opencontainers.image.title``.
The signed manifest (the DSSE envelope) is a second artifact whose ``subject``
is the template's manifest: an OCI 1.1 referrer, found through the referrers
API where the registry has it and through the referrers tag schema
(``sha256-<hex>``, an image index) where it does not.

``pull`` fetches into a hidden folder beside ``--out``, checks every blob
against its descriptor while it streams, then runs goldsmith's own verify
(signature, every output's digests and header, the policy) on that folder,
and only then renames it into place: a refused pull leaves nothing in ``--out``.

The registry itself (references, credentials, TLS, blobs, manifests) is
``validate.registry``; the manifests are built here, as exact bytes, from
``validate.oci_manifest``'s media types, descriptors and image manifest.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from builder.cache import hash_file
from builder.errors import GoldsmithError, InputError
from builder.formats import OutputFormat, file_name
from builder.log import log
from hardening.strictdata import DataError, escape, loads_json, read_regular
from validate.attestations import PROVENANCE_ENVELOPE_NAME, SBOM_ENVELOPE_NAME, SBOM_NAME
from validate.claims import VerificationError
from validate.dsse import MAX_ENVELOPE_BYTES, load_envelope
from validate.keys import PublicKey
from validate.manifest import BUILD_RECORD_NAME, MANIFEST_NAME, VALIDATION_RECORD_NAME
from validate.oci_manifest import (
    EMPTY_CONFIG,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    TITLE,
    Descriptor,
    fallback_tag,
    image_manifest,
    sha256_digest,
)
from validate.oci_reference import Reference
from validate.policy import Pins, Policy
from validate.registry import RegistryClient, RegistryError, descriptor, descriptors, json_object
from validate.statement import decode_statement
from validate.verify import Verdict, verify_artifact

# --- media types (README: "Registry") ---------------------------------------------------

TEMPLATE_ARTIFACT_TYPE = "application/vnd.goldsmith.template.v1"
# The attestation: a DSSE envelope whose payload is an in-toto statement.
ATTESTATION_ARTIFACT_TYPE = "application/vnd.dsse.envelope.v1+json"
ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
PREDICATE_TYPE_ANNOTATION = "in-toto.io/predicate-type"
RECORD_MEDIA_TYPES = {
    BUILD_RECORD_NAME: "application/vnd.goldsmith.build.v1+json",
    VALIDATION_RECORD_NAME: "application/vnd.goldsmith.validation.v1+json",
    "junit.xml": "application/vnd.goldsmith.junit.v1+xml",
    "report.html": "text/html",
    SBOM_NAME: "application/vnd.cyclonedx+json",
}


def disk_media_type(fmt: OutputFormat) -> str:
    return f"application/vnd.goldsmith.disk.{fmt}.v1"


LAYER_MEDIA_TYPES = {
    **{file_name(fmt): disk_media_type(fmt) for fmt in OutputFormat},
    **RECORD_MEDIA_TYPES,
}

MAX_REFERRERS = 16
# The signed envelopes, each attached as a referrer; the template statement first.
ATTESTATION_FILES = (MANIFEST_NAME, SBOM_ENVELOPE_NAME, PROVENANCE_ENVELOPE_NAME)


# --- push -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pushed:
    reference: Reference
    manifest_digest: str
    attestation_digest: str
    referrers_api: bool  # False: the sha256-<hex> tag was written

    def describe(self) -> str:
        where = (
            "referrers API" if self.referrers_api else f"tag {fallback_tag(self.manifest_digest)}"
        )
        return (
            f"{self.reference.host}/{self.reference.path}@{self.manifest_digest}\n"
            f"  attestation: {self.attestation_digest} ({where})"
        )


def template_files(artifact_dir: Path) -> list[Path]:
    """What a template's artifact carries: each disk image present, then the records."""
    names = [file_name(fmt) for fmt in OutputFormat] + list(RECORD_MEDIA_TYPES)
    return [artifact_dir / n for n in names if (artifact_dir / n).is_file()]


def push_template(
    artifact_dir: Path,
    ref: Reference,
    *,
    plain_http: bool = False,
    ca_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Pushed:
    if not artifact_dir.is_dir():
        raise InputError(artifact_dir, None, "expected an artifact folder")
    if ref.tag is None:
        raise InputError(None, "REF", "expected a tag to push to (host/path:tag)")
    envelope_path = artifact_dir / MANIFEST_NAME
    if not envelope_path.is_file():
        raise InputError(
            envelope_path, None, "not found; push takes a signed template (sign it first)"
        )
    if not (artifact_dir / file_name(OutputFormat.qcow2)).is_file():
        raise InputError(
            artifact_dir / "disk.qcow2", None, "not found; expected the template's image"
        )
    client = RegistryClient(ref, plain_http=plain_http, ca_file=ca_file, env=env)
    client.push_blob(EMPTY_CONFIG, sha256_digest(EMPTY_CONFIG), len(EMPTY_CONFIG), "config")
    layers = []
    for path in template_files(artifact_dir):
        digest, size = _file_digest(path)
        client.push_blob(path, digest, size, path.name)
        layers.append(Descriptor(LAYER_MEDIA_TYPES[path.name], digest, size, {TITLE: path.name}))
    manifest = image_manifest(TEMPLATE_ARTIFACT_TYPE, layers)
    client.put_manifest(ref.reference, manifest, MANIFEST_MEDIA_TYPE)
    subject = Descriptor(MANIFEST_MEDIA_TYPE, sha256_digest(manifest), len(manifest))
    # Each signed envelope (the template statement, then the SBOM and
    # provenance when sign made them) is a referrer of its own.
    attached = [
        _attach(client, subject, name, read_regular(artifact_dir / name, MAX_ENVELOPE_BYTES))
        for name in ATTESTATION_FILES
        if (artifact_dir / name).is_file()
    ]
    return Pushed(ref, subject.digest, attached[0][0], attached[0][1])


def _attach(
    client: RegistryClient, subject: Descriptor, name: str, envelope: bytes
) -> tuple[str, bool]:
    """Push one envelope as a referrer of ``subject``: its digest, and whether
    the registry's referrers API indexed it (else the tag schema's index has it)."""
    envelope_digest = sha256_digest(envelope)
    client.push_blob(envelope, envelope_digest, len(envelope), name)
    annotations = {PREDICATE_TYPE_ANNOTATION: _predicate_type(envelope), TITLE: name}
    attestation = image_manifest(
        ATTESTATION_ARTIFACT_TYPE,
        [Descriptor(ENVELOPE_MEDIA_TYPE, envelope_digest, len(envelope), {TITLE: name})],
        subject=subject,
        annotations=annotations,
    )
    digest = sha256_digest(attestation)
    response = client.put_manifest(digest, attestation, MANIFEST_MEDIA_TYPE)
    # A registry with the referrers API says so by naming the subject it indexed.
    api = response.headers.get("OCI-Subject") == subject.digest
    if not api:
        entry = Descriptor(
            MANIFEST_MEDIA_TYPE, digest, len(attestation), annotations, ATTESTATION_ARTIFACT_TYPE
        )
        _add_to_fallback_index(client, subject.digest, entry)
    return digest, api


def _add_to_fallback_index(client: RegistryClient, subject: str, entry: Descriptor) -> None:
    tag = fallback_tag(subject)
    existing = client.get_manifest(tag, INDEX_MEDIA_TYPE)
    manifests: list[dict[str, Any]] = []
    if existing is not None:
        old = json_object(existing, f"index {tag}")
        manifests = [d.to_dict() for d in descriptors(old.get("manifests", []), "manifests")]
    manifests = [m for m in manifests if m["digest"] != entry.digest] + [entry.to_dict()]
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}
    data = json.dumps(index, separators=(",", ":"), sort_keys=True).encode()
    client.put_manifest(tag, data, INDEX_MEDIA_TYPE)


def _predicate_type(envelope: bytes) -> str:
    """The statement's predicate type, for the annotation (read, not trusted)."""
    try:
        doc = loads_json(envelope)
        statement = loads_json(base64.b64decode(doc["payload"]))
        value = statement["predicateType"]
    except (DataError, KeyError, TypeError, ValueError):
        value = None
    return value if isinstance(value, str) else "unknown"


def _file_digest(path: Path) -> tuple[str, int]:
    return "sha256:" + hash_file(path, "sha256")["sha256"], path.stat().st_size


# --- pull -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pulled:
    out: Path
    manifest_digest: str
    verdict: Verdict


def pull_template(
    ref: Reference,
    out: Path,
    *,
    keys: Sequence[Path | PublicKey],
    policy: Policy | Path | None = None,
    pins: Pins | None = None,
    plain_http: bool = False,
    ca_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Pulled:
    """Fetch, verify, then rename into ``out`` (absent or an empty folder)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(out, None, "expected a folder that does not exist or is empty")
    if not out.parent.is_dir():
        raise InputError(out.parent, None, "expected an existing folder to pull into")
    if isinstance(policy, Path):
        policy = Policy.load(policy)
    client = RegistryClient(ref, plain_http=plain_http, ca_file=ca_file, env=env)
    staging = out.parent / f".{out.name}.pull-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o700)
    try:
        digest, layers = _fetch_template(client, ref, staging)
        verdict = _verify_with_referrers(client, digest, staging, keys, policy, pins)
        staging.chmod(0o755)
        if out.exists():
            out.rmdir()  # empty, as checked; rename(2) would also replace it
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("pulled %d files into %s", len(layers), out)
    return Pulled(
        out,
        digest,
        dataclasses.replace(verdict, image=out / verdict.image.name, manifest=out / MANIFEST_NAME),
    )


def _fetch_template(
    client: RegistryClient, ref: Reference, staging: Path
) -> tuple[str, list[Descriptor]]:
    data = client.get_manifest(ref.reference, MANIFEST_MEDIA_TYPE)
    if data is None:
        raise RegistryError(f"{ref}: no such manifest in the registry")
    doc = json_object(data, f"manifest of {ref}")
    if (
        doc.get("mediaType") != MANIFEST_MEDIA_TYPE
        or doc.get("artifactType") != TEMPLATE_ARTIFACT_TYPE
    ):
        raise RegistryError(
            f"{ref}: not a goldsmith template (artifactType "
            f"{escape(repr(doc.get('artifactType')), 100)}, expected {TEMPLATE_ARTIFACT_TYPE})"
        )
    layers = descriptors(doc.get("layers"), "layers")
    names = [layer.annotations.get(TITLE, "") for layer in layers]
    for layer, name in zip(layers, names, strict=True):
        # File names are goldsmith's own, never a path from the registry.
        if LAYER_MEDIA_TYPES.get(name) != layer.media_type or names.count(name) != 1:
            raise RegistryError(
                f"{ref}: layer {escape(repr(name), 100)} ({escape(layer.media_type, 100)}) "
                "is not one of a template's files"
            )
    if file_name(OutputFormat.qcow2) not in names:
        raise RegistryError(f"{ref}: the template has no disk.qcow2")
    for layer, name in zip(layers, names, strict=True):
        client.pull_blob(layer, staging / name, name)
    return sha256_digest(data), layers


def _verify_with_referrers(
    client: RegistryClient,
    digest: str,
    staging: Path,
    keys: Sequence[Path | PublicKey],
    policy: Policy | None,
    pins: Pins | None,
) -> Verdict:
    """The first template statement that verifies; the last refusal when none does.

    The SBOM and provenance envelopes are fetched first, the newest of each
    name (the index lists them in the order they were attached); verify
    judges them with the statement that names them.
    """
    listed = [d for d in client.referrers(digest) if d.artifact_type == ATTESTATION_ARTIFACT_TYPE]
    titled = [(d, d.annotations.get(TITLE, MANIFEST_NAME)) for d in listed[-MAX_REFERRERS:]]
    for name in ATTESTATION_FILES[1:]:
        newest = [d for d, title in titled if title == name][-1:]
        for candidate in newest:
            try:
                (staging / name).write_bytes(_envelope(client, candidate, digest))
            except RegistryError as exc:
                log.warning("attestation %s refused: %s", candidate.digest, exc.message)
    candidates = [d for d, title in titled if title == MANIFEST_NAME]
    if not candidates:
        raise VerificationError(f"{client.ref}: no signed manifest is attached to {digest}")
    refusal: GoldsmithError | None = None
    for candidate in candidates:
        envelope_path = staging / MANIFEST_NAME
        envelope_path.unlink(missing_ok=True)
        try:
            envelope_path.write_bytes(_envelope(client, candidate, digest))
            verdict = verify_artifact(
                staging, keys=keys, policy=policy, pins=pins, all_formats=True
            )
            _check_records(staging)
            return verdict
        except (VerificationError, RegistryError) as exc:
            log.warning("attestation %s refused: %s", candidate.digest, exc.message)
            refusal = exc
    assert refusal is not None
    raise VerificationError(f"no attached signed manifest verifies: {refusal.message}")


def _envelope(client: RegistryClient, candidate: Descriptor, subject: str) -> bytes:
    """The DSSE envelope a referrer of ``subject`` holds, digest-checked."""
    data = client.get_manifest(candidate.digest, MANIFEST_MEDIA_TYPE)
    if data is None:
        raise RegistryError(f"{candidate.digest}: listed as a referrer, but absent")
    doc = json_object(data, "attestation manifest")
    if descriptor(doc.get("subject"), "subject").digest != subject:
        raise RegistryError(f"{candidate.digest}: its subject is another manifest")
    layers = [
        d for d in descriptors(doc.get("layers"), "layers") if d.media_type == ENVELOPE_MEDIA_TYPE
    ]
    if len(layers) != 1:
        raise RegistryError(f"{candidate.digest}: expected one DSSE envelope layer")
    return client.blob_bytes(layers[0], MAX_ENVELOPE_BYTES)


def _check_records(staging: Path) -> None:
    """build.json and validation.json, when pulled, must be the records the
    verified statement names by digest."""
    manifest = staging / MANIFEST_NAME
    statement = decode_statement(manifest, load_envelope(manifest))
    predicate = statement.get("predicate", {})
    for name, key in ((BUILD_RECORD_NAME, "build"), (VALIDATION_RECORD_NAME, "validation")):
        path = staging / name
        if not path.exists():
            continue
        want = predicate.get(key, {}).get("record", {}).get("digest", {}).get("sha256")
        have = hashlib.sha256(path.read_bytes()).hexdigest()
        if want != have:
            raise VerificationError(
                f"{name}: sha256 {have} is not the signed record's ({escape(str(want), 80)})"
            )
