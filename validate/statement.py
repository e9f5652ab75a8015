"""The template statement: its types and its one decoder, in two modes.

Every reader of goldsmith's in-toto statement starts from ``parse_statement``:
the payload's JSON under the strict reading rules, an in-toto Statement v1 of
the template predicate type. ``decode_payload`` then reads its fields into one
``Statement``, field by field through ``Fields``, in one of two modes:

- strict (``StrictFields``), and only after the signatures over it verified:
  ``goldsmith verify`` (validate/claims.py's ``read_claims``, whose ``Claims``
  is a view of the Statement). A field verify decides on is there or
  "missing", of its type, and held to verify's checks (non-empty names,
  lowercase hex digests, RFC 3339 times, counts that are the listed
  controls', the output subjects and the platform); what verify decides
  nothing on (base, waivers, SBOM, builder, tools, inputs, provisioning,
  build, validation, previous manifest, attestations, each control's record
  beyond its id and status) is not read at all, so a malformed one changes no
  verdict. A malformed statement is "not trusted", exit 1.
- lenient (``LenientFields``), for questions other than trust (``report``,
  ``history``, ``outdated``): ``read_statement`` decodes the statement an
  envelope carries, WITHOUT verifying it, and reads every field: an absent
  one reads as None, a present one of the wrong type is bad input (exit 2).
  The report's ``ManifestClaims`` (validate/manifest_report.py) and history's
  and outdated's ``ManifestFacts`` (builder/manifest_facts.py) are views of
  that one ``Statement``, so a manifest one of them refuses, the others
  refuse too.

Fields are read in one order in both modes, the order verify has always
reported them in: the first thing wrong is the one a message names.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from builder.errors import InputError
from builder.formats import OutputFormat
from hardening.results import CheckResult, Status
from hardening.strictdata import DataError, escape, loads_json
from validate.dsse import PAYLOAD_TYPE_IN_TOTO, Envelope, EnvelopeError
from validate.outputs import OutputSubject, read_output_subjects
from validate.results import Package
from validate.statement_fields import Fields, known

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://goldsmith.dev/template/v1"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
SHA512_HEX = re.compile(r"[0-9a-f]{128}")
PROFILE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
FIRMWARES = ("bios", "uefi", "uefi-secureboot")
_STATUSES = frozenset(str(s) for s in Status)


class StatementError(ValueError):
    """A payload that is no goldsmith template statement. ``field`` is the dotted
    path under the payload ("" for the payload itself), ``found`` what was there,
    ``cause`` why the payload is no JSON at all (None when it is JSON)."""

    def __init__(
        self, field: str, expected: str, found: Any = None, cause: str | None = None
    ) -> None:
        super().__init__(f"{field or 'payload'}: {expected}")
        self.field, self.expected, self.found, self.cause = field, expected, found, cause


def parse_statement(payload: bytes) -> dict[str, Any]:
    """The payload's JSON (under the strict reading rules) if it is an in-toto
    Statement v1 of goldsmith's template predicate type; StatementError otherwise.
    Nothing else is checked here: ``decode_payload`` reads the fields."""
    try:
        statement = loads_json(payload)
    except DataError as exc:
        raise StatementError("", "a JSON in-toto statement", cause=str(exc)) from None
    if not isinstance(statement, dict):
        raise StatementError("", "a JSON object (an in-toto statement)")
    if statement.get("_type") != STATEMENT_TYPE:
        raise StatementError("_type", repr(STATEMENT_TYPE), statement.get("_type"))
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise StatementError("predicateType", repr(PREDICATE_TYPE), statement.get("predicateType"))
    return statement


def decode_statement(path: Path, envelope: Envelope) -> dict[str, Any]:
    """The goldsmith in-toto statement an envelope carries, decoded but NOT
    verified; InputError (an EnvelopeError) if it is not one.

    For readers that answer questions other than trust (``outdated``,
    ``report``, ``history``); ``goldsmith verify`` checks signatures first.
    """
    if envelope.payload_type != PAYLOAD_TYPE_IN_TOTO:
        raise EnvelopeError(path, "payloadType", f"expected {PAYLOAD_TYPE_IN_TOTO!r}")
    try:
        return parse_statement(envelope.payload)
    except StatementError as exc:
        if exc.cause is not None:
            expected = f"expected base64 of {exc.expected} ({exc.cause})"
            raise EnvelopeError(path, "payload", expected) from None
        field = f"payload.{exc.field}" if exc.field else "payload"
        raise EnvelopeError(path, field, f"expected {exc.expected}") from None


class LenientFields(Fields):
    """The lenient mode: for questions other than trust."""


class StrictFields(Fields):
    """The strict mode: only after the signatures over the document verified."""

    strict = True


# --- the statement ---------------------------------------------------------------------

Digests = tuple[tuple[str, str], ...]  # (algorithm, hex) in the order the manifest lists them


@dataclasses.dataclass(frozen=True)
class Subject:
    name: str
    digests: Digests


@dataclasses.dataclass(frozen=True)
class BaseImage:
    name: str | None
    source: str | None
    uri: str | None
    digests: Digests
    inputs: Mapping[str, Any] | None = None  # recipe inputs, when the manifest carries them


@dataclasses.dataclass(frozen=True)
class Waiver:
    control: str
    reason: str
    expires: str | None  # YYYY-MM-DD; None: no expiry


@dataclasses.dataclass(frozen=True)
class InputRef:
    label: str  # "spec", "profile"
    uri: str | None
    digests: Digests


@dataclasses.dataclass(frozen=True)
class AttestationRef:
    """An attestation the predicate names: its file name, type and payload digest."""

    name: str
    predicate_type: str
    payload_sha256: str


@dataclasses.dataclass(frozen=True)
class PlatformClaims:
    """The predicate's platform: the firmware built for, and what validation proved."""

    firmware: str  # bios | uefi | uefi-secureboot
    secure_boot_verified: bool
    tpm_verified: bool
    measured_boot: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "firmware": self.firmware,
            "secureBootVerified": self.secure_boot_verified,
            "tpmVerified": self.tpm_verified,
            "measuredBoot": self.measured_boot,
        }

    @property
    def notable(self) -> bool:
        return self.firmware != "bios" or self.tpm_verified or self.measured_boot

    def describe(self) -> str:
        proven = [
            name
            for name, flag in (
                ("Secure Boot", self.secure_boot_verified),
                ("TPM 2.0", self.tpm_verified),
                ("measured boot", self.measured_boot),
            )
            if flag
        ]
        return f"{self.firmware}; proven in validation: {', '.join(proven) or 'none'}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Statement:
    """Every field of a template statement: None (or empty) where the statement
    says nothing. Decoded strictly, the fields verify decides nothing on keep
    their defaults (they are not read), and ``outputs`` and ``platform`` are
    verify's alone."""

    subjects: tuple[Subject, ...]  # strict: the qcow2's only; the others are ``outputs``
    template_name: str | None
    template_version: str | None
    template_format: str | None
    virtual_size: int | None
    profile_id: str | None
    profile_version: str | None
    profile_digest: str | None
    approved: bool | None
    counts: dict[str, int] | None  # as claimed; compare with the controls listed
    statuses: Mapping[str, str]  # control id -> status, in the order listed
    approval_time: str | None
    approval_keyid: str | None
    approval_valid_until: str | None
    outputs: tuple[OutputSubject, ...] = ()  # strict: subjects after the qcow2: raw, vmdk, ...
    platform: PlatformClaims | None = None  # strict; None: signed before firmware was recorded
    controls: tuple[CheckResult, ...] = ()  # lenient: each control's whole record
    bases: tuple[BaseImage, ...] = ()
    waivers: tuple[Waiver, ...] = ()
    sbom_format: str | None = None
    packages: tuple[Package, ...] = ()  # a name or version the statement lacks reads as ""
    builder_id: str | None = None
    builder_version: str | None = None
    tools: tuple[tuple[str, str], ...] = ()
    inputs: tuple[InputRef, ...] = ()
    # path (relative to the spec) -> sha256 of every provisioning input, or
    # None for a manifest from before provisioning was recorded.
    provision_inputs: Mapping[str, str] | None = None
    build_accelerator: str | None = None
    build_started: str | None = None
    build_finished: str | None = None
    build_record_sha256: str | None = None
    validation_accelerator: str | None = None
    validation_finished: str | None = None
    validation_record_sha256: str | None = None
    previous_manifest_sha256: str | None = None
    attestation_refs: tuple[AttestationRef, ...] = ()

    def input_sha256(self, label: str) -> str | None:
        """The sha256 of the input named ``label`` ("spec", "profile"), if listed."""
        for ref in self.inputs:
            if ref.label == label:
                return dict(ref.digests).get("sha256")
        return None


def read_statement(path: Path, envelope: Envelope) -> Statement:
    """The statement ``envelope`` (read from ``path``) carries, decoded but NOT
    verified; InputError (an EnvelopeError for the payload itself) if malformed."""
    return decode_payload(LenientFields(path, "payload", decode_statement(path, envelope)))


def decode_payload(payload: Fields) -> Statement:
    """The one decoding of a statement's fields (``payload`` is the statement
    ``parse_statement`` returned), in ``payload``'s mode."""
    first, others = _read_subject_list(payload)
    predicate = payload.section("predicate")
    results = predicate.obj("results")
    controls, statuses = _read_controls(results)
    counts = _read_counts(results, statuses)
    approved = results.flag("approved")
    subjects = tuple(_read_subject(subject) for subject in first)
    template, profile, approval = (predicate.obj(k) for k in ("template", "profile", "approval"))
    statement = Statement(
        subjects=subjects,
        template_name=_text(template, "name", _nonempty),
        template_version=_text(template, "version", _nonempty),
        template_format=template.text("format"),
        virtual_size=template.integer("virtualSize"),
        profile_id=_text(profile, "id", _nonempty),
        profile_version=profile.text("version"),
        profile_digest=_text(profile, "digest", _hex(PROFILE_DIGEST)),
        approved=approved,
        counts=counts,
        statuses=statuses,
        controls=controls,
        approval_time=_text(approval, "time", _time),
        approval_keyid=approval.text("keyid"),
        approval_valid_until=_text(approval, "validUntil", _time),
        outputs=read_output_subjects(others, payload.source) if payload.strict else (),
        platform=_read_platform(predicate) if payload.strict else None,
    )
    if payload.strict:
        return statement
    # What verify decides nothing on: read leniently only.
    sbom, builder, build, validation, inputs = (
        predicate.obj(k) for k in ("sbom", "builder", "build", "validation", "inputs")
    )
    return dataclasses.replace(
        statement,
        bases=tuple(_read_base(b) for b in predicate.objs("base")),
        waivers=tuple(
            Waiver(w.text("control") or "", w.text("reason") or "", w.text("expires"))
            for w in predicate.objs("waivers")
        ),
        sbom_format=sbom.text("format"),
        packages=tuple(
            Package(p.text("name") or "", p.text("version") or "", p.text("architecture") or "")
            for p in sbom.objs("packages")
        ),
        builder_id=builder.text("id"),
        builder_version=builder.text("version"),
        tools=predicate.strings("tools"),
        inputs=tuple(
            InputRef(label, inputs.obj(label).text("uri"), inputs.obj(label).strings("digest"))
            for label in inputs.data
        ),
        provision_inputs=_read_provision_inputs(predicate),
        build_accelerator=build.text("accelerator"),
        build_started=build.text("started"),
        build_finished=build.text("finished"),
        build_record_sha256=build.obj("record").obj("digest").text("sha256"),
        validation_accelerator=validation.text("accelerator"),
        validation_finished=validation.text("finished"),
        validation_record_sha256=validation.obj("record").obj("digest").text("sha256"),
        previous_manifest_sha256=predicate.obj("previousManifest").obj("digest").text("sha256"),
        attestation_refs=tuple(
            AttestationRef(
                item.text("name") or "",
                item.text("predicateType") or "",
                item.obj("payloadDigest").text("sha256") or "",
            )
            for item in predicate.objs("attestations")
        ),
    )


# --- verify's checks, beyond a field's type (strict mode only) ---------------------------

Check = Callable[[str], str | None]  # why the text is refused; None when it is not


def _text(fields: Fields, key: str, check: Check) -> str | None:
    value = fields.text(key)
    if fields.strict and value is not None and (why := check(value)):
        fields.fail(key, why)
    return value


def _nonempty(value: str) -> str | None:
    return None if value else "expected a non-empty string"


def _hex(pattern: re.Pattern[str]) -> Check:
    return lambda value: None if pattern.fullmatch(value) else "expected a lowercase hex digest"


def parse_time(text: str) -> datetime.datetime | None:
    """An RFC 3339 time with its offset, in UTC; None for anything else. A time
    whose offset carries it past year 1 or 9999 is refused here, not met as an
    OverflowError while the refusal of an expired manifest is written."""
    try:
        moment = datetime.datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            moment = moment.astimezone(datetime.UTC)
    except (ValueError, OverflowError):
        return None
    return moment if moment.tzinfo is not None else None


def _time(value: str) -> str | None:
    return None if parse_time(value) else "expected an RFC 3339 time"


# --- the parts ---------------------------------------------------------------------------


def _read_subject_list(payload: Fields) -> tuple[list[Fields], list[Any]]:
    """The subjects read as subjects, and (strict) the rest, read as the outputs."""
    if not payload.strict:
        return list(payload.objs("subject")), []
    raw = payload.value("subject")
    if not isinstance(raw, list) or not 1 <= len(raw) <= len(OutputFormat):
        payload.fail(
            "subject",
            "expected exactly one subject (the qcow2 image), then one per other output format",
        )
    return [payload.item("subject", 0, raw[0])], raw[1:]


def _read_subject(subject: Fields) -> Subject:
    name = subject.text("name") or ""
    if not subject.strict:
        return Subject(name, subject.strings("digest"))
    digest = subject.obj("digest")  # verify compares the image with these two
    return Subject(
        name,
        tuple(
            (algorithm, known(_text(digest, algorithm, _hex(pattern))))
            for algorithm, pattern in (("sha256", SHA256_HEX), ("sha512", SHA512_HEX))
        ),
    )


def _read_controls(results: Fields) -> tuple[tuple[CheckResult, ...], dict[str, str]]:
    """The listed controls (lenient: their whole records) and each one's status."""
    controls = []
    statuses: dict[str, str] = {}
    for i, raw in enumerate(results.raw_list("controls")):
        field = results.path(f"controls[{i}]")
        if results.strict:  # verify decides on the id and the status alone
            entry = results.item("controls", i, raw)
            control_id, status = known(entry.text("id")), known(entry.text("status"))
        else:
            control = _read_result(results, field, raw)
            control_id, status = control.id, str(control.status)
            controls.append(control)
        # A control listed failed and then passed would show a reader both:
        # every reader must see the same result, so none reads it.
        if control_id in statuses:
            raise InputError(
                results.source, f"{field}.id", f"duplicate control id {escape(repr(control_id))}"
            )
        if status not in _STATUSES:
            raise InputError(
                results.source, f"{field}.status", f"unknown status {escape(repr(status))}"
            )
        statuses[control_id] = status
    return tuple(controls), statuses


def _read_result(results: Fields, field: str, raw: Any) -> CheckResult:
    if not isinstance(raw, dict):
        raise InputError(results.source, field, "expected a result object")
    try:
        return CheckResult.from_dict(raw)
    except KeyError as exc:
        raise InputError(results.source, field, f"missing {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(results.source, field, f"expected a result object ({exc})") from None


def _read_counts(results: Fields, statuses: dict[str, str]) -> dict[str, int] | None:
    """The summary counts. Strict: they must be those of the listed controls, as a
    verdict line must never show other numbers than the results it was decided
    on; lenient: as claimed (the page shows a disagreement)."""
    if not results.strict:
        if results.data.get("counts") is None:
            return None
        counts = results.obj("counts")
        return {str(s): counts.integer(str(s)) or 0 for s in Status}
    raw = results.value("counts")
    recount = {str(s): 0 for s in Status}
    for status in statuses.values():
        recount[status] += 1
    if not isinstance(raw, dict) or set(raw) != set(recount):
        results.fail("counts", f"expected integer counts of {', '.join(recount)}")
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int):
            results.fail(f"counts.{name}", "expected an integer")
    if raw != recount:
        results.fail("counts", "the counts disagree with the listed controls")
    return recount


def _read_platform(predicate: Fields) -> PlatformClaims | None:
    if "platform" not in predicate.data:
        return None
    platform = predicate.obj("platform")
    firmware = known(platform.text("firmware"))
    if firmware not in FIRMWARES:
        platform.fail("firmware", "expected " + ", ".join(FIRMWARES))
    secure_boot, tpm = platform.obj("secureBoot"), platform.obj("tpm")
    return PlatformClaims(
        firmware=firmware,
        secure_boot_verified=known(secure_boot.flag("verified")),
        tpm_verified=known(tpm.flag("verified")),
        measured_boot=known(tpm.flag("measuredBoot")),
    )


def _read_base(item: Fields) -> BaseImage:
    inputs = item.data.get("inputs")
    return BaseImage(
        item.text("name"),
        item.text("source"),
        item.text("uri"),
        item.strings("digest"),
        inputs if isinstance(inputs, dict) else None,
    )


def _read_provision_inputs(predicate: Fields) -> Mapping[str, str] | None:
    if "provision" not in predicate.data:
        return None
    return {
        i.need("path"): i.need("sha256")
        for step in predicate.objs("provision")
        for i in step.objs("inputs")
    }
