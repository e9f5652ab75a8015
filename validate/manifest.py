"""The signed manifest: an in-toto statement about one approved template, in a DSSE envelope.

``sign_artifact`` stamps an artifact folder only when its validation approved the
very image in it: both digests are recomputed from disk.qcow2 and must match what
validation.json and build.json recorded. The statement is assembled from those two
records (the formats are in the project's data-format notes) and nothing else.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.errors import GoldsmithError, InputError
from builder.log import complete_step, log

# build.json's model and reader, and the artifact folder's file names, live in
# builder/record.py; they stay importable from here, where sign and verify read them.
from builder.record import BUILD_RECORD_NAME as BUILD_RECORD_NAME
from builder.record import BUILD_SCHEMA as BUILD_SCHEMA
from builder.record import IMAGE_NAME as IMAGE_NAME
from builder.record import MANIFEST_NAME as MANIFEST_NAME
from builder.record import SSH_SIGNATURE_NAME as SSH_SIGNATURE_NAME
from builder.record import VALIDATION_RECORD_NAME as VALIDATION_RECORD_NAME
from builder.record import BuildRecord as BuildRecord
from builder.record import parse_build_record
from builder.run import run
from hardening.results import Status
from hardening.strictdata import DataError, escape, loads_json, read_regular
from validate.dsse import (
    MAX_ENVELOPE_BYTES,
    read_envelope,
)
from validate.keys import (
    PassphraseSource,
    SigningKey,
    load_signing_key,
    passphrase_from_env_or_tty,
)
from validate.outputs import changed_outputs, output_subjects
from validate.provenance import locate_spec, portable_profile, portable_uri
from validate.qcow2 import hash_image, require_self_contained
from validate.results import RecordError, ValidationRun
from validate.statement import PREDICATE_TYPE, STATEMENT_TYPE

if TYPE_CHECKING:
    from validate.approvals import SignMode
    from validate.attestations import Attachments

BUILDER_ID = "https://goldsmith.dev/builder"
SBOM_FORMAT = "goldsmith-dpkg/v1"
# The namespace binds an OpenSSH signature to this use, so a signature made for
# git commits or files with the same key can never pass as a manifest signature.
SSH_NAMESPACE = "goldsmith-manifest"

MAX_VALID_FOR_DAYS = 3650


# The longest message printed whole: paths and digests make lines long.
_LINE = 2000


class SigningError(GoldsmithError):
    """The artifact is not fit to be signed (exit code 1)."""


class PrintableError(GoldsmithError):
    """A GoldsmithError whose text is safe for a terminal. Names, versions,
    keyids and field names come from documents an attacker may have written; a
    carriage return or an escape sequence in them could paint a fake
    "TRUSTED:" line over a refusal. The commands that read manifests and
    records raise this in place of what they caught."""

    def __init__(self, error: GoldsmithError) -> None:
        hint = escape(error.hint, _LINE) if error.hint else None
        super().__init__(escape(error.message, _LINE), hint=hint)
        self.exit_code = error.exit_code


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC, to the second: 2026-11-27T08:00:00Z."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_statement(
    build: BuildRecord,
    validation: ValidationRun,
    *,
    build_record_sha256: str,
    validation_record_sha256: str,
    image_sha256: str,
    image_sha512: str,
    virtual_size: int,
    keyid: str,
    approved_at: datetime.datetime,
    valid_until: datetime.datetime,
    previous_manifest_sha256: str | None = None,
) -> dict[str, Any]:
    """The in-toto statement for an approved template, as the data formats define it."""
    profile_hex = build.profile_digest.removeprefix("sha256:")
    spec = locate_spec(build.spec_path, build.spec_sha256)
    predicate: dict[str, Any] = {
        "template": {
            "name": build.template_name,
            "version": build.template_version,
            "format": "qcow2",
            "virtualSize": virtual_size,
        },
        "base": [
            {
                "name": b.name,
                "uri": portable_uri(b.uri),
                "digest": dict(b.digest),
                "source": b.source,
            }
            for b in build.base
        ],
        "profile": {
            "id": validation.profile_id,
            "version": validation.profile_version,
            "digest": validation.profile_digest,
        },
        "results": {
            "approved": validation.approved,
            "counts": validation.counts,
            "controls": [r.to_dict() for r in validation.results],
        },
        # Waived controls are listed with their reasons: a waiver is a decision an
        # auditor must be able to see, never a silent gap in the results.
        "waivers": [
            {"control": r.id, "reason": r.reason, "expires": None}
            for r in validation.results
            if r.status is Status.waived
        ],
        "sbom": {
            "format": SBOM_FORMAT,
            "packages": [dataclasses.asdict(p) for p in validation.packages],
        },
        "builder": {"id": BUILDER_ID, "version": build.tools["goldsmith"]},
        "tools": {"qemu": build.tools["qemu"], "goldsmith": build.tools["goldsmith"]},
        # Named as they are in the spec's repository, never by a path on this host.
        "inputs": {
            "spec": {"uri": spec.path, "digest": {"sha256": build.spec_sha256}},
            "profile": {
                "uri": portable_profile(build.profile_source, spec, build.spec_path),
                "digest": {"sha256": profile_hex},
            },
        },
        # What went into the image beyond the base and the profile, step by step.
        "provision": provision_claims(build),
        "platform": platform_claims(build, validation),
        "build": {
            "accelerator": build.accelerator,
            "started": build.started,
            "finished": build.finished,
            "record": {"digest": {"sha256": build_record_sha256}},
        },
        "validation": {
            "finished": validation.finished,
            "accelerator": validation.accelerator,
            "record": {"digest": {"sha256": validation_record_sha256}},
        },
        "approval": {
            "time": format_time(approved_at),
            "keyid": keyid,
            "validUntil": format_time(valid_until),
        },
    }
    if previous_manifest_sha256 is not None:
        predicate["previousManifest"] = {"digest": {"sha256": previous_manifest_sha256}}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": f"{build.template_name}-{build.template_version}.qcow2",
                "digest": {"sha256": image_sha256, "sha512": image_sha512},
            },
            # Each other output format is a subject of its own, after the qcow2.
            *output_subjects(build.template_name, build.template_version, build.outputs),
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def provision_claims(build: BuildRecord) -> list[dict[str, Any]]:
    """The provisioning steps as the statement names them: build.json's steps
    with the secrets' names under ``envFromHost``."""
    return [
        {
            "index": step["index"],
            "kind": step["kind"],
            "name": step["name"],
            "inputs": [dict(item) for item in step["inputs"]],
            "envFromHost": list(step["env_from_host"]),
            "seconds": step["seconds"],
        }
        for step in build.provision
    ]


def platform_claims(build: BuildRecord, validation: ValidationRun) -> dict[str, Any]:
    """The firmware the template was built for and, for Secure Boot and the
    TPM, whether the validation boot proved them (its PLAT-* checks passed):
    what ``verify``'s require_firmware and require_tpm read."""
    passed = {r.id for r in validation.results if r.status is Status.passed}
    secure = build.firmware == "uefi-secureboot"
    return {
        "firmware": build.firmware,
        "secureBoot": {"required": secure, "verified": secure and "PLAT-SECUREBOOT" in passed},
        "tpm": {
            "required": build.tpm,
            "verified": build.tpm and "PLAT-TPM" in passed,
            "measuredBoot": build.tpm and "PLAT-PCRS" in passed,
        },
    }


def encode_statement(statement: Mapping[str, Any]) -> bytes:
    return json.dumps(statement, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _read_bytes(path: Path, what: str) -> bytes:
    """The record's exact bytes (what the manifest's digest covers), a regular
    file of bounded size; a missing one says which command makes it."""
    try:
        data = read_regular(path, MAX_ENVELOPE_BYTES)
    except FileNotFoundError:
        raise SigningError(
            f"{path}: not found; only a built and validated artifact can be signed",
            hint=f"run `goldsmith {what}` first",
        ) from None
    except DataError as exc:
        raise InputError(path, None, f"cannot be read as a record ({exc})") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot be read ({exc.strerror})") from None
    return data


def _read_record(path: Path, what: str) -> tuple[bytes, Any]:
    """The record's exact bytes and their JSON, read under the strict rules: a
    record with two ``approved`` keys, say, would mean one thing to goldsmith and
    another to the next tool."""
    data = _read_bytes(path, what)
    try:
        return data, loads_json(data)
    except DataError as exc:
        raise InputError(path, None, f"expected a JSON document ({exc})") from None


def load_validation(path: Path) -> tuple[bytes, ValidationRun, bool]:
    """validation.json's bytes, the parsed run, and the approval the file itself states."""
    data, doc = _read_record(path, "validate")
    try:
        validation = ValidationRun.from_dict(doc)
    except RecordError as exc:
        raise InputError(path, exc.field, exc.expected) from None
    stated = isinstance(doc, dict) and doc.get("approved") is True
    return data, validation, stated


def sign_artifact(
    artifact_dir: Path,
    key_path: Path | str,
    *,
    valid_for_days: int | None = None,
    previous: Path | None = None,
    ssh_key: Path | None = None,
    now: datetime.datetime | None = None,
    passphrase: PassphraseSource = passphrase_from_env_or_tty,
    mode: SignMode | str = "renew",
    pin_env: str | None = None,
) -> Path:
    """Sign the approved template in ``artifact_dir``; returns the manifest's path.

    With a manifest already there, ``mode`` decides (``validate.approvals.SignMode``):
    add a signature to it (refused when it no longer describes the artifact or
    the key signed it already), replace it (fresh), or (renew, the default) replace it
    only when it no longer describes the artifact. ``valid_for_days`` is 180
    for a new statement; for an added signature it must agree with the statement.
    """
    from validate.approvals import Current, SignMode, add_approval, locked_folder
    from validate.attestations import make_attachments

    mode = SignMode(mode)
    if not artifact_dir.is_dir():
        raise InputError(artifact_dir, None, "expected an artifact folder")
    if valid_for_days is not None and not 1 <= valid_for_days <= MAX_VALID_FOR_DAYS:
        raise InputError(None, "--valid-for", f"expected 1..{MAX_VALID_FOR_DAYS} days")
    approved_at = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    image = artifact_dir / IMAGE_NAME
    if not image.is_file():
        raise InputError(image, None, "image not found; expected the artifact's disk image")

    validation_path = artifact_dir / VALIDATION_RECORD_NAME
    validation_bytes, validation, stated_approved = load_validation(validation_path)
    if not (validation.approved and stated_approved):
        counts = validation.counts
        raise SigningError(
            f"{validation_path}: validation did not approve this template "
            f"({counts['failed']} failed, {counts['error']} error, "
            f"{counts['passed']} passed); refusing to sign",
        )
    build_path = artifact_dir / BUILD_RECORD_NAME
    build_bytes = _read_bytes(build_path, "build")
    build = parse_build_record(build_bytes, build_path)
    if (build.template_name, build.template_version) != (
        validation.template_name,
        validation.template_version,
    ):
        raise SigningError(
            f"{validation_path}: validates {validation.template_name} "
            f"{validation.template_version}, but {build_path} built {build.template_name} "
            f"{build.template_version}"
        )
    # The manifest names one profile; its results must be the results of the
    # profile the image was built with, not of another one relabelled after
    # the fact (nor of the same name at another digest).
    if (validation.profile_id, validation.profile_digest) != (
        build.profile_id,
        build.profile_digest,
    ):
        raise SigningError(
            f"{validation_path}: validated against profile {escape(repr(validation.profile_id))} "
            f"({escape(validation.profile_digest)}), but {build_path} built with "
            f"{escape(repr(build.profile_id))} ({escape(build.profile_digest)}); refusing to sign",
            hint="validate against the build's profile: goldsmith validate ARTIFACT",
        )

    key = load_signing_key(key_path, passphrase, pin_env=pin_env)
    previous_sha256 = _previous_manifest_digest(previous) if previous else None

    header = require_self_contained(image)
    with complete_step(f"Hashing {image}"):
        sha256, sha512 = hash_image(image)
    # The evidence must be about these very bytes: validation of an earlier image,
    # or a build record of another, would stamp something nobody checked.
    for record, path, (want256, want512) in (
        ("validation", validation_path, (validation.image_sha256, validation.image_sha512)),
        ("build", build_path, (build.image_sha256, build.image_sha512)),
    ):
        if (want256, want512) != (sha256, sha512):
            raise SigningError(
                f"{path}: the {record} record names a different image than {image} "
                f"(recorded sha256 {want256[:16]}..., image has {sha256[:16]}...); "
                "refusing to sign"
            )
    # Each other format is signed as the file it is now, which must be the one built.
    if problems := changed_outputs(artifact_dir, build.outputs):
        raise SigningError(f"{build_path}: {'; '.join(problems)}; refusing to sign")

    statement = build_statement(
        build,
        validation,
        build_record_sha256=hashlib.sha256(build_bytes).hexdigest(),
        validation_record_sha256=hashlib.sha256(validation_bytes).hexdigest(),
        image_sha256=sha256,
        image_sha512=sha512,
        virtual_size=header.virtual_size,
        keyid=key.keyid,
        approved_at=approved_at,
        valid_until=approved_at + datetime.timedelta(days=valid_for_days or 180),
        previous_manifest_sha256=previous_sha256,
    )
    with locked_folder(artifact_dir):
        if mode is not SignMode.fresh and (artifact_dir / MANIFEST_NAME).exists():
            current = Current(statement, valid_for_days, previous_sha256)
            added = add_approval(
                artifact_dir, key, current, mode=mode, ssh_key=ssh_key, now=approved_at
            )
            if added is not None:
                return added
        attachments = make_attachments(build, validation, statement, approved_at=approved_at)
        attachments.attach(statement)
        manifest = write_manifest(
            artifact_dir, statement, key, ssh_key=ssh_key, attachments=attachments
        )
    log.info("signed %s with key %s (%s)", manifest, key.keyid, key.type)
    return manifest


def _previous_manifest_digest(previous: Path) -> str:
    _, digest = read_envelope(previous)  # it must at least be a manifest envelope
    return digest


def write_manifest(
    artifact_dir: Path,
    statement: Mapping[str, Any],
    key: SigningKey,
    *,
    ssh_key: Path | None = None,
    attachments: Attachments | None = None,
) -> Path:
    """Sign ``statement`` into artifact_dir/manifest.dsse.json (and its OpenSSH .sig),
    with its attestations (SBOM, provenance) beside it.

    Every file is made in a scratch folder and renamed into place, so a reader
    never sees half an envelope, nor a signature file left over from an older one.
    """
    from validate.attestations import write_signed

    return write_signed(artifact_dir, statement, key, attachments, ssh_key=ssh_key)


def ssh_sign(path: Path, ssh_key: Path) -> Path:
    """An OpenSSH signature over the file's bytes, written to ``path``.sig."""
    if not ssh_key.is_file():
        raise InputError(ssh_key, None, "SSH private key not found")
    # -f may name a public key whose private half an ssh-agent holds.
    agent = {k: v for k, v in os.environ.items() if k == "SSH_AUTH_SOCK"}
    run(["ssh-keygen", "-q", "-Y", "sign", "-n", SSH_NAMESPACE, "-f", ssh_key, path], env=agent)
    return path.with_name(path.name + ".sig")
