"""What a signed template statement claims, read strictly: ``goldsmith verify``'s view.

The statement is read only after a trusted signature over it verified
(validate/verify.py), through the one decoder of the statement
(validate/statement.py's ``parse_statement``) and the strict field reader
(``JsonFields``). Anything malformed, ambiguous or out of shape inside a signed
envelope is not trusted: a ``VerificationError`` (exit 1), never a traceback.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from pathlib import Path
from typing import Any

from builder.errors import GoldsmithError, InputError
from builder.formats import OutputFormat
from builder.json_fields import JsonFields
from hardening.results import Status
from hardening.strictdata import escape
from validate.outputs import OutputSubject, read_output_subjects
from validate.statement import StatementError, parse_statement

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_SHA512 = re.compile(r"[0-9a-f]{128}")
PROFILE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_STATUSES = frozenset(str(s) for s in Status)


class VerificationError(GoldsmithError):
    """The artifact is not trusted (exit code 1); the message says exactly why."""


@dataclasses.dataclass(frozen=True)
class Claims:
    """The statement, read only after a trusted signature over it verified."""

    subject_name: str
    sha256: str
    sha512: str
    template_name: str
    template_version: str
    image_format: str
    virtual_size: int
    profile_id: str
    profile_version: str
    profile_digest: str
    approved: bool
    counts: dict[str, int]
    controls: dict[str, str]  # control id -> status
    approval_time: datetime.datetime
    approval_keyid: str
    valid_until: datetime.datetime
    outputs: tuple[OutputSubject, ...] = ()  # subjects after the qcow2: raw, vmdk, ...
    platform: PlatformClaims | None = None  # None: signed before firmware was recorded


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


def read_claims(payload: bytes, source: Path) -> Claims:
    """The claims of a signed statement; VerificationError for anything malformed,
    ambiguous or out of shape: inside a signed envelope that is not trusted."""
    try:
        return _read_claims(payload, source)
    except InputError as exc:
        raise VerificationError(f"{source}: statement {exc.field or ''}: {exc.expected}") from None


def _read_claims(payload: bytes, source: Path) -> Claims:
    # The one decoder of the statement (validate.statement), in its strict mode:
    # what it refuses inside a signed envelope is not trusted.
    try:
        doc = parse_statement(payload)
    except StatementError as exc:
        if exc.cause is not None:
            what = f"the signed payload is not an acceptable in-toto statement ({exc.cause})"
        elif not exc.field:
            what = "the signed payload is not a JSON object"
        else:
            name = "statement _type" if exc.field == "_type" else exc.field
            what = f"{name} is {escape(repr(exc.found))}; expected {exc.expected}"
        raise VerificationError(f"{source}: {what}") from None
    fields = JsonFields(doc, source, "payload")
    subjects = fields.get("subject")
    if not isinstance(subjects, list) or not 1 <= len(subjects) <= len(OutputFormat):
        raise InputError(
            source,
            "payload.subject",
            "expected exactly one subject (the qcow2 image), then one per other output format",
        )
    subject = JsonFields(subjects[0], source, "payload.subject[0]")
    predicate = JsonFields(fields.get("predicate"), source, "payload.predicate")
    controls = predicate.get("results.controls")
    if not isinstance(controls, list):
        raise InputError(source, "payload.predicate.results.controls", "expected a list")
    statuses: dict[str, str] = {}
    for i, control in enumerate(controls):
        field = f"payload.predicate.results.controls[{i}]"
        entry = JsonFields(control, source, field)
        control_id, status = entry.text("id"), entry.text("status")
        if control_id in statuses:
            # Listed failed, then passed: every reader must see the same result.
            raise InputError(
                source, f"{field}.id", f"duplicate control id {escape(repr(control_id))}"
            )
        if status not in _STATUSES:
            raise InputError(source, f"{field}.status", f"unknown status {escape(repr(status))}")
        statuses[control_id] = status
    counts = _read_counts(predicate.get("results.counts"), statuses, source)
    approved = predicate.get("results.approved")
    if not isinstance(approved, bool):
        raise InputError(source, "payload.predicate.results.approved", "expected true or false")
    return Claims(
        subject_name=subject.text("name"),
        sha256=_hex(subject, "digest.sha256", SHA256_HEX),
        sha512=_hex(subject, "digest.sha512", _SHA512),
        template_name=_nonempty(predicate, "template.name"),
        template_version=_nonempty(predicate, "template.version"),
        image_format=predicate.text("template.format"),
        virtual_size=predicate.integer("template.virtualSize"),
        profile_id=_nonempty(predicate, "profile.id"),
        profile_version=predicate.text("profile.version"),
        profile_digest=_hex(predicate, "profile.digest", PROFILE_DIGEST),
        approved=approved,
        counts=counts,
        controls=statuses,
        approval_time=_read_time(predicate, "approval.time"),
        approval_keyid=predicate.text("approval.keyid"),
        valid_until=_read_time(predicate, "approval.validUntil"),
        outputs=read_output_subjects(subjects[1:], source),
        platform=_read_platform(predicate),
    )


FIRMWARES = ("bios", "uefi", "uefi-secureboot")


def _read_platform(predicate: JsonFields) -> PlatformClaims | None:
    if "platform" not in predicate.data:
        return None
    firmware = predicate.text("platform.firmware")
    if firmware not in FIRMWARES:
        raise InputError(
            predicate.path,
            "payload.predicate.platform.firmware",
            "expected " + ", ".join(FIRMWARES),
        )
    flags = {}
    for dotted in ("secureBoot.verified", "tpm.verified", "tpm.measuredBoot"):
        value = predicate.get(f"platform.{dotted}")
        if not isinstance(value, bool):
            raise InputError(
                predicate.path, f"payload.predicate.platform.{dotted}", "expected true or false"
            )
        flags[dotted] = value
    return PlatformClaims(
        firmware=firmware,
        secure_boot_verified=flags["secureBoot.verified"],
        tpm_verified=flags["tpm.verified"],
        measured_boot=flags["tpm.measuredBoot"],
    )


def _read_counts(raw: Any, statuses: dict[str, str], source: Path) -> dict[str, int]:
    """The summary counts, which must be those of the listed controls: a verdict
    line must never show other numbers than the results it was decided on."""
    field = "payload.predicate.results.counts"
    recount = {str(s): 0 for s in Status}
    for status in statuses.values():
        recount[status] += 1
    if not isinstance(raw, dict) or set(raw) != set(recount):
        raise InputError(source, field, f"expected integer counts of {', '.join(recount)}")
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(source, f"{field}.{name}", "expected an integer")
    if raw != recount:
        raise InputError(source, field, "the counts disagree with the listed controls")
    return recount


def _nonempty(fields: JsonFields, dotted: str) -> str:
    value = fields.text(dotted)
    if not value:
        raise InputError(fields.path, f"{fields.prefix}.{dotted}", "expected a non-empty string")
    return value


def _hex(fields: JsonFields, dotted: str, pattern: re.Pattern[str]) -> str:
    value = fields.text(dotted)
    if not pattern.fullmatch(value):
        raise InputError(
            fields.path, f"{fields.prefix}.{dotted}", "expected a lowercase hex digest"
        )
    return value


def _read_time(fields: JsonFields, dotted: str) -> datetime.datetime:
    text = fields.text(dotted)
    try:
        moment = datetime.datetime.fromisoformat(text)
        # In UTC, as every check and message reads it: a time whose offset
        # carries it past year 1 or 9999 is refused here, not met as an
        # OverflowError while the refusal of an expired manifest is written.
        if moment.tzinfo is not None:
            moment = moment.astimezone(datetime.UTC)
    except (ValueError, OverflowError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InputError(fields.path, f"{fields.prefix}.{dotted}", "expected an RFC 3339 time")
    return moment
