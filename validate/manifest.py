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
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.errors import GoldsmithError, InputError
from builder.formats import Output
from builder.log import complete_step, log
from builder.run import run
from hardening.results import Status
from hardening.strictdata import DataError, escape, loads_json, read_regular
from validate.dsse import (
    MAX_ENVELOPE_BYTES,
    PAYLOAD_TYPE_IN_TOTO,
    Envelope,
    EnvelopeError,
    read_envelope,
)
from validate.keys import (
    PassphraseSource,
    SigningKey,
    load_signing_key,
    passphrase_from_env_or_tty,
)
from validate.outputs import changed_outputs, output_subjects, read_output_records
from validate.provenance import locate_spec, portable_profile, portable_uri
from validate.qcow2 import hash_image, require_self_contained
from validate.results import RecordError, ValidationRun

if TYPE_CHECKING:
    from validate.attestations import Attachments, SignMode

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://goldsmith.dev/template/v1"
BUILD_SCHEMA = "https://goldsmith.dev/build/v1"
BUILDER_ID = "https://goldsmith.dev/builder"
SBOM_FORMAT = "goldsmith-dpkg/v1"

IMAGE_NAME = "disk.qcow2"
BUILD_RECORD_NAME = "build.json"
VALIDATION_RECORD_NAME = "validation.json"
MANIFEST_NAME = "manifest.dsse.json"
SSH_SIGNATURE_NAME = MANIFEST_NAME + ".sig"
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


@dataclasses.dataclass(frozen=True)
class BaseImage:
    name: str
    uri: str
    source: str
    digest: dict[str, str]


@dataclasses.dataclass(frozen=True)
class BuildRecord:
    """The parts of build.json a manifest records."""

    template_name: str
    template_version: str
    spec_path: str
    spec_sha256: str
    profile_id: str
    profile_source: str
    profile_digest: str  # "sha256:<hex>"
    base: tuple[BaseImage, ...]
    image_sha256: str
    image_sha512: str
    image_virtual_size: int
    tools: dict[str, str]
    accelerator: str
    started: str
    finished: str
    # The spec's provisioning steps: kind, name, input digests by spec-relative
    # path, the names of host secrets (never values), duration.
    provision: tuple[dict[str, Any], ...] = ()
    # The other output formats (raw, vmdk, vhd, vhdx, ova) with their digests.
    outputs: tuple[Output, ...] = ()
    # What the template was built to boot from, and with a TPM or not
    # (records from before firmware was recorded: bios, no TPM).
    firmware: str = "bios"
    tpm: bool = False

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> BuildRecord:
        doc = JsonFields(data, path)
        schema = doc.text("schema")
        if schema != BUILD_SCHEMA:
            raise InputError(path, "schema", f"expected {BUILD_SCHEMA!r}, found {schema!r}")
        raw_base = doc.get("base")
        bases = raw_base if isinstance(raw_base, list) else [raw_base]
        base = []
        for i, entry in enumerate(bases):
            prefix = "base" if not isinstance(raw_base, list) else f"base[{i}]"
            item = JsonFields(entry, path, prefix)
            base.append(
                BaseImage(
                    name=item.text("name"),
                    uri=item.text("uri"),
                    source=item.text("source"),
                    digest=item.digest("digest"),
                )
            )
        tools = doc.get("tools")
        if not isinstance(tools, dict) or not all(isinstance(v, str) for v in tools.values()):
            raise InputError(path, "tools", "expected a mapping of tool name to version string")
        for tool in ("goldsmith", "qemu"):
            if tool not in tools:
                raise InputError(path, f"tools.{tool}", "expected the tool's version")
        return cls(
            template_name=doc.text("template.name"),
            template_version=doc.text("template.version"),
            spec_path=doc.text("spec.path"),
            spec_sha256=doc.text("spec.sha256"),
            profile_id=doc.text("profile.id"),
            profile_source=doc.text("profile.source"),
            profile_digest=doc.text("profile.digest"),
            base=tuple(base),
            image_sha256=doc.text("image.sha256"),
            image_sha512=doc.text("image.sha512"),
            image_virtual_size=doc.integer("image.virtual_size"),
            tools=dict(tools),
            accelerator=doc.text("accelerator"),
            started=doc.text("started"),
            finished=doc.text("finished"),
            provision=_read_provision(data.get("provision", []), path),
            outputs=read_output_records(data.get("outputs"), path),
            **_read_firmware(data.get("firmware"), path),
        )


def _read_firmware(value: Any, path: Path) -> dict[str, Any]:
    """build.json's firmware: the kind and the TPM, checked; absent in records
    from before goldsmith recorded firmware (they were all bios, no TPM)."""
    if value is None:
        return {}
    item = JsonFields(value, path, "firmware")
    firmware = item.text("type")
    if firmware not in ("bios", "uefi", "uefi-secureboot"):
        raise InputError(path, "firmware.type", "expected bios, uefi or uefi-secureboot")
    tpm = value.get("tpm", False)
    if not isinstance(tpm, bool):
        raise InputError(path, "firmware.tpm", "expected true or false")
    return {"firmware": firmware, "tpm": tpm}


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _read_provision(value: Any, path: Path) -> tuple[dict[str, Any], ...]:
    """build.json's provision list, each step checked field by field and copied
    into a fresh dict, so nothing unexpected rides into the signed statement."""
    if not isinstance(value, list):
        raise InputError(path, "provision", "expected a list of steps")
    steps = []
    for index, raw in enumerate(value):
        item = JsonFields(raw, path, f"provision[{index}]")
        inputs = []
        raw_inputs = item.get("inputs")
        if not isinstance(raw_inputs, list):
            raise InputError(path, f"provision[{index}].inputs", "expected a list")
        for n, entry in enumerate(raw_inputs):
            one = JsonFields(entry, path, f"provision[{index}].inputs[{n}]")
            digest = one.text("sha256")
            if not _SHA256.fullmatch(digest):
                raise InputError(path, one._name("sha256"), "expected 64 lower-case hex digits")
            inputs.append({"path": one.text("path"), "sha256": digest})
        secrets = item.get("env_from_host")
        if not isinstance(secrets, list) or not all(isinstance(n, str) for n in secrets):
            raise InputError(path, f"provision[{index}].env_from_host", "expected names")
        seconds = raw.get("seconds", 0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise InputError(path, f"provision[{index}].seconds", "expected a number")
        steps.append(
            {
                "index": item.integer("index"),
                "kind": item.text("kind"),
                "name": item.text("name"),
                "inputs": inputs,
                "envFromHost": list(secrets),
                "seconds": seconds,
            }
        )
    return tuple(steps)


class JsonFields:
    """Typed access to a JSON document by dotted path; a bad field is an InputError."""

    def __init__(self, data: Any, path: Path, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise InputError(path, prefix or None, "expected a JSON object")
        self.data, self.path, self.prefix = data, path, prefix

    def _name(self, dotted: str) -> str:
        return f"{self.prefix}.{dotted}" if self.prefix else dotted

    def get(self, dotted: str) -> Any:
        value: Any = self.data
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                raise InputError(self.path, self._name(dotted), "missing")
            value = value[part]
        return value

    def text(self, dotted: str) -> str:
        value = self.get(dotted)
        if not isinstance(value, str):
            raise InputError(self.path, self._name(dotted), "expected a string")
        return value

    def integer(self, dotted: str) -> int:
        value = self.get(dotted)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(self.path, self._name(dotted), "expected an integer")
        return value

    def digest(self, dotted: str) -> dict[str, str]:
        value = self.get(dotted)
        if (
            not isinstance(value, dict)
            or "sha256" not in value
            or not all(isinstance(v, str) for v in value.values())
        ):
            raise InputError(
                self.path, self._name(dotted), 'expected {"sha256": "<hex>", ...} digests'
            )
        return dict(value)


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
        "provision": [dict(step) for step in build.provision],
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


def _read_record(path: Path, what: str) -> tuple[bytes, Any]:
    """The record's exact bytes (what the manifest's digest covers) and their JSON,
    read under the strict rules: a record with two ``approved`` keys, say, would
    mean one thing to goldsmith and another to the next tool."""
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

    With a manifest already there, ``mode`` decides (``validate.attestations.SignMode``):
    add a signature to it (refused when it no longer describes the artifact or
    the key signed it already), replace it (fresh), or (renew, the default) replace it
    only when it no longer describes the artifact. ``valid_for_days`` is 180
    for a new statement; for an added signature it must agree with the statement.
    """
    from validate.attestations import (
        Current,
        SignMode,
        add_approval,
        locked_folder,
        make_attachments,
    )

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
    build_bytes, build_doc = _read_record(build_path, "build")
    build = BuildRecord.from_dict(build_doc, build_path)
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


def decode_statement(path: Path, envelope: Envelope) -> dict[str, Any]:
    """The goldsmith in-toto statement an envelope carries, decoded but NOT
    verified; InputError if it is not one.

    For readers that answer questions other than trust (``outdated``,
    ``report``, ``history``); ``goldsmith verify`` checks signatures first.
    """
    if envelope.payload_type != PAYLOAD_TYPE_IN_TOTO:
        raise EnvelopeError(path, "payloadType", f"expected {PAYLOAD_TYPE_IN_TOTO!r}")
    try:
        statement = loads_json(envelope.payload)
    except DataError as exc:
        raise EnvelopeError(
            path, "payload", f"expected base64 of a JSON in-toto statement ({exc})"
        ) from None
    if not isinstance(statement, dict):
        raise EnvelopeError(path, "payload", "expected a JSON object (an in-toto statement)")
    if statement.get("_type") != STATEMENT_TYPE:
        raise EnvelopeError(path, "payload._type", f"expected {STATEMENT_TYPE!r}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise EnvelopeError(path, "payload.predicateType", f"expected {PREDICATE_TYPE!r}")
    return statement


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
