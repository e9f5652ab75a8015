"""``goldsmith verify``: is this image the approved, signed template it claims to be?

Everything is recomputed, in this order: the signatures over the exact envelope
bytes (PAE of the decoded payload, never re-serialised JSON) and the number of
distinct trusted, unrevoked keys that made them; then the statement's types;
then the policy (expiry always, approval always, profile, age, required
controls); then the image itself: its qcow2 header must not point outside the
file, and its sha256 and sha512 must match the subject. The image is hashed
last only because it is the slow part; every check must pass.

Each check is a small callable that raises VerificationError; checks compose
with AllOf, and an AllOf with nothing in it refuses rather than passes.

The envelope and the statement are read under ``hardening.strictdata``'s rules
(duplicate keys, depth, huge integers, lone surrogates are all refused), and
anything wrong inside them is "not trusted" (exit 1), never a traceback. Pins
(``--name``, ``--version``, ``--min-version``, ``--profile``,
``--profile-digest`` or the same in the policy) stop an older or another
template, validly signed, from passing in the expected place (rollback).
Everything a document says is passed through ``escape()`` before it reaches a
terminal.
"""

from __future__ import annotations

import dataclasses
import datetime
import hmac
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from builder.errors import GoldsmithError, InputError
from builder.formats import OutputFormat, file_name
from builder.log import complete_step
from hardening.errors import suggest
from hardening.results import Status
from hardening.strictdata import DataError, escape, loads_yaml, read_regular
from validate.attestations import AttestationError, Attested, verify_attestations
from validate.dsse import (
    MAX_SIGNATURES,
    PAYLOAD_TYPE_IN_TOTO,
    Envelope,
    EnvelopeError,
    load_envelope,
    verified_keyids,
)
from validate.keys import PublicKey, load_public_key
from validate.manifest import (
    MANIFEST_NAME,
    MAX_VALID_FOR_DAYS,
    JsonFields,
    StatementError,
    format_time,
    parse_statement,
)
from validate.outputs import OutputSubject, check_output, read_output_subjects
from validate.qcow2 import ImageError, hash_image, require_self_contained
from validate.results import blocking_statuses, is_approved

# A signer's clock may run a little ahead of ours; more than this is refused.
CLOCK_SKEW = datetime.timedelta(minutes=5)
# A policy is a few lines; a larger file is not one.
MAX_POLICY_BYTES = 1 << 20
_KEYID = re.compile(r"[0-9a-f]{64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA512 = re.compile(r"[0-9a-f]{128}")
_PROFILE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_NUMERIC_VERSION = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9}){0,15}")
_STATUSES = frozenset(str(s) for s in Status)


class VerificationError(GoldsmithError):
    """The artifact is not trusted (exit code 1); the message says exactly why."""


# --- what the signed statement says -------------------------------------------------


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
    # The one decoder of the statement (validate.manifest), in its strict mode:
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
        sha256=_hex(subject, "digest.sha256", _SHA256),
        sha512=_hex(subject, "digest.sha512", _SHA512),
        template_name=_nonempty(predicate, "template.name"),
        template_version=_nonempty(predicate, "template.version"),
        image_format=predicate.text("template.format"),
        virtual_size=predicate.integer("template.virtualSize"),
        profile_id=_nonempty(predicate, "profile.id"),
        profile_version=predicate.text("profile.version"),
        profile_digest=_hex(predicate, "profile.digest", _PROFILE_DIGEST),
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


# --- the checks ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Evidence:
    image: Path
    manifest: Path
    claims: Claims
    signers: frozenset[str]  # keyids of trusted keys whose signature verified
    now: datetime.datetime


Check = Callable[[Evidence], None]


@dataclasses.dataclass(frozen=True)
class AllOf:
    checks: tuple[Check, ...]

    def __call__(self, evidence: Evidence) -> None:
        # Nothing checked must never read as everything fine.
        if not self.checks:
            raise VerificationError("the policy has no checks; an empty policy trusts nothing")
        for check in self.checks:
            check(evidence)


@dataclasses.dataclass(frozen=True)
class SignedByThreshold:
    threshold: int
    revoked: frozenset[str] = frozenset()

    def __call__(self, evidence: Evidence) -> None:
        revoked = evidence.signers & self.revoked
        counted = evidence.signers - self.revoked
        if len(counted) >= self.threshold:
            return
        if revoked:
            raise VerificationError(
                f"{evidence.manifest}: signed by revoked key(s) {', '.join(sorted(revoked))}; "
                f"{len(counted)} unrevoked trusted key(s) signed, {self.threshold} required"
            )
        raise VerificationError(
            f"{evidence.manifest}: {len(counted)} distinct trusted key(s) signed; "
            f"the threshold is {self.threshold}"
        )


def not_expired(evidence: Evidence) -> None:
    claims = evidence.claims
    if evidence.now >= claims.valid_until:
        raise VerificationError(
            f"{evidence.manifest}: the manifest expired at {format_time(claims.valid_until)} "
            f"(validUntil); it is now {format_time(evidence.now)}"
        )
    if claims.approval_time > evidence.now + CLOCK_SKEW:
        raise VerificationError(
            f"{evidence.manifest}: approved at {format_time(claims.approval_time)}, "
            "which is in the future"
        )


def results_approved(evidence: Evidence) -> None:
    claims = evidence.claims
    # Recount from the per-control statuses rather than trust the summary flag alone.
    blocking = blocking_statuses(claims.controls.values())
    if not (claims.approved and is_approved(blocking)):
        failing = sum(1 for s in blocking if s != Status.passed)
        raise VerificationError(
            f"{evidence.manifest}: the results are not approved "
            f"({failing} control(s) not passed out of {len(blocking)})"
        )


@dataclasses.dataclass(frozen=True)
class RequiredProfile:
    profile: str
    origin: str = "the policy"  # who asked: "the policy" or "--profile"

    def __call__(self, evidence: Evidence) -> None:
        if evidence.claims.profile_id != self.profile:
            raise VerificationError(
                f"{evidence.manifest}: validated against profile "
                f"{escape(repr(evidence.claims.profile_id))}; {self.origin} requires "
                f"{escape(repr(self.profile))}"
            )


@dataclasses.dataclass(frozen=True)
class RequiredProfileDigest:
    digest: str  # "sha256:<hex>"
    origin: str = "the policy"

    def __call__(self, evidence: Evidence) -> None:
        if not hmac.compare_digest(evidence.claims.profile_digest, self.digest):
            raise VerificationError(
                f"{evidence.manifest}: validated against profile digest "
                f"{evidence.claims.profile_digest}; {self.origin} requires {self.digest}"
            )


@dataclasses.dataclass(frozen=True)
class RequiredName:
    name: str
    origin: str = "the policy"

    def __call__(self, evidence: Evidence) -> None:
        if evidence.claims.template_name != self.name:
            raise VerificationError(
                f"{evidence.manifest}: the template is "
                f"{escape(repr(evidence.claims.template_name))}; {self.origin} requires "
                f"{escape(repr(self.name))}"
            )


@dataclasses.dataclass(frozen=True)
class RequiredVersion:
    version: str
    origin: str = "the policy"

    def __call__(self, evidence: Evidence) -> None:
        if evidence.claims.template_version != self.version:
            raise VerificationError(
                f"{evidence.manifest}: the template version is "
                f"{escape(repr(evidence.claims.template_version))}; {self.origin} requires "
                f"{escape(repr(self.version))}"
            )


def numeric_version(text: str) -> tuple[int, ...] | None:
    """A numeric dotted version ("1.10.2") as a tuple for comparison, trailing zeros
    dropped (1.2 == 1.2.0); None for anything else ("1.0-rc1", "v2", "")."""
    if not _NUMERIC_VERSION.fullmatch(text):
        return None
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@dataclasses.dataclass(frozen=True)
class MinVersion:
    """No template older than this: the rollback guard. Versions compare as
    numbers, part by part (1.10 > 1.9); a version that is not numeric dotted
    cannot be ordered, so it is refused rather than guessed at."""

    version: str
    origin: str = "the policy"

    def __call__(self, evidence: Evidence) -> None:
        minimum = numeric_version(self.version)
        found = numeric_version(evidence.claims.template_version)
        shown = escape(repr(evidence.claims.template_version))
        if minimum is None or found is None:
            raise VerificationError(
                f"{evidence.manifest}: the template version {shown} is not numeric dotted; "
                f"{self.origin} requires at least {self.version!r}"
            )
        if found < minimum:
            raise VerificationError(
                f"{evidence.manifest}: the template version {shown} is lower than "
                f"{self.version!r}, the least {self.origin} accepts (an older template)"
            )


@dataclasses.dataclass(frozen=True)
class Pins:
    """What the deployer expects this very template to be. Without pins, any
    template signed by a trusted key passes: an older one put in the expected
    place (a rollback) included."""

    name: str | None = None
    version: str | None = None
    min_version: str | None = None
    profile: str | None = None
    profile_digest: str | None = None
    flags: bool = True  # from the command line (messages name the flag) or the policy

    def origin(self, flag: str, key: str) -> str:
        return flag if self.flags else f"the policy ({key})"

    def validate(self, path: Path | None = None) -> Pins:
        """These pins, with the digest normalised; InputError naming the bad one."""

        def where(flag: str, key: str) -> tuple[Path | None, str]:
            return (None, flag) if self.flags else (path, key)

        for value, flag, key in (
            (self.name, "--name", "required_name"),
            (self.version, "--version", "required_version"),
            (self.profile, "--profile", "required_profile"),
        ):
            if value is not None and (not value or len(value) > 256):
                raise InputError(*where(flag, key), "expected a non-empty string")
        if self.min_version is not None and numeric_version(self.min_version) is None:
            raise InputError(
                *where("--min-version", "min_version"),
                "expected a numeric dotted version such as 1.2.0",
            )
        digest = self.profile_digest
        if digest is not None:
            digest = digest.lower()
            if _SHA256.fullmatch(digest):
                digest = "sha256:" + digest
            if not _PROFILE_DIGEST.fullmatch(digest):
                raise InputError(
                    *where("--profile-digest", "required_profile_digest"),
                    "expected sha256:<64 hex digits>, the profile digest validation recorded",
                )
        return dataclasses.replace(self, profile_digest=digest)

    def checks(self) -> list[Check]:
        checks: list[Check] = []
        if self.name is not None:
            checks.append(RequiredName(self.name, self.origin("--name", "required_name")))
        if self.version is not None:
            checks.append(
                RequiredVersion(self.version, self.origin("--version", "required_version"))
            )
        if self.min_version is not None:
            checks.append(MinVersion(self.min_version, self.origin("--min-version", "min_version")))
        if self.profile is not None:
            checks.append(
                RequiredProfile(self.profile, self.origin("--profile", "required_profile"))
            )
        if self.profile_digest is not None:
            checks.append(
                RequiredProfileDigest(
                    self.profile_digest,
                    self.origin("--profile-digest", "required_profile_digest"),
                )
            )
        return checks


@dataclasses.dataclass(frozen=True)
class MaxAge:
    days: float

    def __call__(self, evidence: Evidence) -> None:
        age = evidence.now - evidence.claims.approval_time
        if age > datetime.timedelta(days=self.days):
            raise VerificationError(
                f"{evidence.manifest}: approved {age.days} days ago; "
                f"the policy allows at most {self.days:g} (max_age_days)"
            )


@dataclasses.dataclass(frozen=True)
class RequiredControls:
    controls: tuple[str, ...]

    def __call__(self, evidence: Evidence) -> None:
        for control in self.controls:
            status = evidence.claims.controls.get(control)
            if status != Status.passed:
                found = "absent from the results" if status is None else status
                raise VerificationError(
                    f"{evidence.manifest}: required control {escape(control)} is {found}, "
                    "not passed"
                )


# A template for Secure Boot boots in UEFI mode too (shim runs without
# enforcement); a BIOS template boots nowhere else.
_SATISFIES = {
    "bios": ("bios",),
    "uefi": ("uefi", "uefi-secureboot"),
    "uefi-secureboot": ("uefi-secureboot",),
}


def _platform(evidence: Evidence, what: str) -> PlatformClaims:
    platform = evidence.claims.platform
    if platform is None:
        raise VerificationError(
            f"{evidence.manifest}: the manifest records no firmware or TPM (signed before "
            f"goldsmith recorded them); the policy requires {what}"
        )
    return platform


def _proven(evidence: Evidence, control: str, claimed: bool) -> bool:
    """Both the predicate's summary and the signed result of the check itself."""
    return claimed and evidence.claims.controls.get(control) == Status.passed


@dataclasses.dataclass(frozen=True)
class RequiredFirmware:
    firmware: str

    def __call__(self, evidence: Evidence) -> None:
        what = f"firmware {self.firmware} (require_firmware)"
        platform = _platform(evidence, what)
        if platform.firmware not in _SATISFIES[self.firmware]:
            raise VerificationError(
                f"{evidence.manifest}: the template was built for firmware "
                f"{platform.firmware}; the policy requires {what}"
            )
        if self.firmware == "uefi-secureboot" and not _proven(
            evidence, "PLAT-SECUREBOOT", platform.secure_boot_verified
        ):
            raise VerificationError(
                f"{evidence.manifest}: validation did not prove Secure Boot enabled and "
                f"enforcing (PLAT-SECUREBOOT); the policy requires {what}"
            )


def required_tpm(evidence: Evidence) -> None:
    what = "a TPM with measured boot (require_tpm)"
    platform = _platform(evidence, what)
    if not _proven(evidence, "PLAT-TPM", platform.tpm_verified):
        raise VerificationError(
            f"{evidence.manifest}: validation did not prove a TPM 2.0 in the guest "
            f"(PLAT-TPM); the policy requires {what}"
        )
    if not _proven(evidence, "PLAT-PCRS", platform.measured_boot):
        raise VerificationError(
            f"{evidence.manifest}: validation did not prove measured boot (PLAT-PCRS); "
            f"the policy requires {what}"
        )


def image_self_contained(evidence: Evidence) -> None:
    claims = evidence.claims
    if claims.image_format != "qcow2":
        raise VerificationError(
            f"{evidence.manifest}: image format {escape(repr(claims.image_format))}; "
            "expected 'qcow2'"
        )
    try:
        header = require_self_contained(evidence.image)
    except ImageError as exc:
        raise VerificationError(exc.message) from None
    if header.virtual_size != claims.virtual_size:
        raise VerificationError(
            f"{evidence.image}: virtual size {header.virtual_size} differs from the "
            f"manifest's {claims.virtual_size}; this is not the signed image"
        )


@dataclasses.dataclass(frozen=True)
class OutputsMatch:
    """The image checks of ``--format`` and ``--all``: each chosen format's file
    against its own subject (the qcow2 by the two checks above)."""

    formats: tuple[OutputFormat, ...]
    folder: Path | None  # None: the one image given is of formats[0]
    every: bool = False  # every format the manifest signs

    def chosen(self, claims: Claims) -> tuple[OutputFormat, ...]:
        if self.every:
            return (OutputFormat.qcow2, *(s.format for s in claims.outputs))
        return self.formats

    def __call__(self, evidence: Evidence) -> None:
        for fmt in self.chosen(evidence.claims):
            path = evidence.image if self.folder is None else self.folder / file_name(fmt)
            if fmt is OutputFormat.qcow2:
                image_self_contained(dataclasses.replace(evidence, image=path))
                image_digests_match(dataclasses.replace(evidence, image=path))
                continue
            subject = next((s for s in evidence.claims.outputs if s.format is fmt), None)
            if subject is None:
                raise VerificationError(f"{evidence.manifest}: the manifest signs no {fmt} output")
            try:
                check_output(path, subject, evidence.claims.virtual_size)
            except ImageError as exc:
                raise VerificationError(exc.message) from None


def image_digests_match(evidence: Evidence) -> None:
    claims = evidence.claims
    with complete_step(f"Hashing {evidence.image}"):
        sha256, sha512 = hash_image(evidence.image)
    for name, actual, expected in (
        ("sha256", sha256, claims.sha256),
        ("sha512", sha512, claims.sha512),
    ):
        if not hmac.compare_digest(actual, expected):
            raise VerificationError(
                f"{evidence.image}: {name} {actual} does not match the manifest subject "
                f"{escape(claims.subject_name)} ({expected}); "
                "the image was altered or is another one"
            )


# --- the policy file -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Policy:
    required_profile: str | None = None
    required_result: str = "approved"
    max_age_days: float | None = None
    required_controls: tuple[str, ...] = ()
    revoked_keys: frozenset[str] = frozenset()
    threshold: int = 1
    required_name: str | None = None
    required_version: str | None = None
    min_version: str | None = None
    required_profile_digest: str | None = None
    require_firmware: str | None = None  # bios | uefi | uefi-secureboot
    require_tpm: bool = False

    @classmethod
    def load(cls, path: Path) -> Policy:
        """The policy file, read under the strict rules: a duplicated key
        (``revoked_keys: [K]`` then ``revoked_keys: []``) is refused, never merged."""
        try:
            data = loads_yaml(read_regular(path, MAX_POLICY_BYTES))
        except FileNotFoundError:
            raise InputError(path, None, "policy file not found") from None
        except OSError as exc:
            raise InputError(path, None, f"policy file cannot be read ({exc.strerror})") from None
        except DataError as exc:
            if path.is_dir():
                raise InputError(path, None, "is a directory") from None
            raise InputError(path, _field_of_inf(path), f"expected YAML ({exc})") from None
        return cls.from_dict(data if data is not None else {}, path)

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> Policy:
        if not isinstance(data, dict):
            raise InputError(path, None, "expected a mapping of policy settings")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                hint = suggest(str(key), known) or f"; known keys: {known}"
                raise InputError(path, escape(str(key)), f"unknown policy key{hint}")
        values: dict[str, Any] = {}
        for key in ("required_profile", "required_name", "required_version", "min_version"):
            if (value := data.get(key)) is not None:
                if not isinstance(value, str) or not value:
                    raise InputError(path, key, "expected a non-empty string (quote versions)")
                values[key] = value
        if (digest := data.get("required_profile_digest")) is not None:
            if not isinstance(digest, str):
                raise InputError(path, "required_profile_digest", "expected sha256:<hex>")
            values["required_profile_digest"] = digest
        if (firmware := data.get("require_firmware")) is not None:
            if firmware not in FIRMWARES:
                raise InputError(path, "require_firmware", "expected " + ", ".join(FIRMWARES))
            values["require_firmware"] = firmware
        if (tpm := data.get("require_tpm")) is not None:
            if not isinstance(tpm, bool):
                raise InputError(path, "require_tpm", "expected true or false")
            values["require_tpm"] = tpm
        if data.get("required_result", "approved") != "approved":
            raise InputError(path, "required_result", "expected 'approved' (the only result)")
        if (age := data.get("max_age_days")) is not None:
            # .inf, .nan and 1.0e12 would pass a "positive number" test and then
            # overflow (or disable the check); a manifest lives at most MAX_VALID_FOR_DAYS.
            if (
                isinstance(age, bool)
                or not isinstance(age, int | float)
                or not math.isfinite(age)
                or not 0 < age <= MAX_VALID_FOR_DAYS
            ):
                raise InputError(
                    path,
                    "max_age_days",
                    f"expected a number of days above 0 and at most {MAX_VALID_FOR_DAYS}",
                )
            values["max_age_days"] = float(age)
        controls = data.get("required_controls") or []
        if not isinstance(controls, list) or not all(isinstance(c, str) and c for c in controls):
            raise InputError(path, "required_controls", "expected a list of control ids")
        values["required_controls"] = tuple(controls)
        revoked = data.get("revoked_keys") or []
        if not isinstance(revoked, list) or not all(
            isinstance(k, str) and _KEYID.fullmatch(k.lower()) for k in revoked
        ):
            raise InputError(
                path, "revoked_keys", "expected a list of keyids (64 hex digits, sha256 of SPKI)"
            )
        values["revoked_keys"] = frozenset(k.lower() for k in revoked)
        if (threshold := data.get("threshold")) is not None:
            if (
                isinstance(threshold, bool)
                or not isinstance(threshold, int)
                or not 1 <= threshold <= MAX_SIGNATURES
            ):
                raise InputError(
                    path, "threshold", f"expected an integer from 1 to {MAX_SIGNATURES}"
                )
            values["threshold"] = threshold
        policy = cls(**values)
        policy.pins().validate(path)
        return policy

    def pins(self) -> Pins:
        return Pins(
            name=self.required_name,
            version=self.required_version,
            min_version=self.min_version,
            profile=self.required_profile,
            profile_digest=self.required_profile_digest,
            flags=False,
        )

    def checks(
        self, threshold: int, pins: Pins | None = None, image_checks: Sequence[Check] = ()
    ) -> AllOf:
        """Every check this policy (and the command line's pins) demand; the
        threshold is the stricter of the two, and every pin from either holds."""
        checks: list[Check] = [
            SignedByThreshold(max(threshold, self.threshold), self.revoked_keys),
            not_expired,  # validUntil is enforced whatever the policy says
            results_approved,  # so is the approval: sign refuses anything else
        ]
        checks += self.pins().validate().checks()
        if pins is not None:
            checks += pins.validate().checks()
        if self.max_age_days is not None:
            checks.append(MaxAge(self.max_age_days))
        if self.required_controls:
            checks.append(RequiredControls(self.required_controls))
        if self.require_firmware is not None:
            checks.append(RequiredFirmware(self.require_firmware))
        if self.require_tpm:
            checks.append(required_tpm)
        checks += image_checks or [image_self_contained, image_digests_match]
        return AllOf(tuple(checks))


_INF_OR_NAN = re.compile(r"([A-Za-z_]+)\s*:\s*[-+]?\.(?:inf|Inf|INF|nan|NaN|NAN)\s*(?:#.*)?")


def _field_of_inf(path: Path) -> str | None:
    """The policy key set to .inf or .nan, if that is what was refused: the
    strict reader refuses them before any key is known."""
    try:
        text = read_regular(path, MAX_POLICY_BYTES).decode("utf-8")
    except (OSError, DataError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        if match := _INF_OR_NAN.fullmatch(line.strip()):
            return match.group(1)
    return None


# --- putting it together -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verdict:
    image: Path
    manifest: Path
    signers: tuple[PublicKey, ...]
    threshold: int
    claims: Claims
    formats: tuple[str, ...] = ("qcow2",)  # the outputs whose files were checked
    attestations: tuple[Attested, ...] = ()  # the SBOM and provenance beside the manifest

    def to_dict(self) -> dict[str, Any]:
        c = self.claims
        return {
            "trusted": True,
            "image": str(self.image),
            "manifest": str(self.manifest),
            "signers": [{"keyid": k.keyid, "type": str(k.type)} for k in self.signers],
            "threshold": self.threshold,
            "subject": {"name": c.subject_name, "digest": {"sha256": c.sha256, "sha512": c.sha512}},
            "template": {"name": c.template_name, "version": c.template_version},
            "profile": {"id": c.profile_id, "version": c.profile_version},
            "results": {"approved": c.approved, "counts": c.counts},
            "approval": {
                "time": format_time(c.approval_time),
                "keyid": c.approval_keyid,
                "validUntil": format_time(c.valid_until),
            },
            "formats": list(self.formats),
            "attestations": [a.to_dict() for a in self.attestations],
            "platform": None if c.platform is None else c.platform.to_dict(),
        }

    def describe(self) -> str:
        """The verdict for a terminal: every field the manifest supplied is escaped,
        so no control character in a name or version can paint another line."""
        c = self.claims
        counts = ", ".join(f"{n} {status}" for status, n in c.counts.items())
        signers = ", ".join(f"{k.keyid} ({k.type})" for k in self.signers)
        return "\n".join(
            [
                f"TRUSTED: {escape(c.template_name)} {escape(c.template_version)} ({self.image})",
                f"  signed by: {signers} [threshold {self.threshold}]",
                f"  profile:   {escape(c.profile_id)} {escape(c.profile_version)} "
                f"({c.profile_digest})",
                f"  results:   approved; {counts}",
                f"  approved:  {format_time(c.approval_time)}, "
                f"valid until {format_time(c.valid_until)}",
                f"  sha256:    {c.sha256}",
                *(
                    [f"  formats:   {', '.join(self.formats)}"]
                    if self.formats != ("qcow2",)
                    else []
                ),
                *(
                    [f"  attested:  {', '.join(a.describe() for a in self.attestations)}"]
                    if self.attestations
                    else []
                ),
                # Only beyond the default (BIOS, no TPM), as formats are.
                *(
                    [f"  platform:  {c.platform.describe()}"]
                    if c.platform and c.platform.notable
                    else []
                ),
            ]
        )


def not_trusted_dict(error: GoldsmithError) -> dict[str, Any]:
    return {"trusted": False, "exit_code": error.exit_code, "reason": error.message}


def verify_artifact(
    artifact_dir: Path | None = None,
    *,
    image: Path | None = None,
    manifest: Path | None = None,
    keys: Sequence[Path | PublicKey],
    threshold: int = 1,
    policy: Policy | Path | None = None,
    pins: Pins | None = None,
    now: datetime.datetime | None = None,
    formats: Sequence[str] = (),
    all_formats: bool = False,
) -> Verdict:
    """Verify an artifact folder, or an image and its manifest; the Verdict if trusted.

    ``formats`` names the outputs whose files are checked (the qcow2 when
    empty; with an image rather than a folder, the image's format);
    ``all_formats`` checks every output the manifest signs.

    Raises VerificationError (not trusted) or InputError (unusable input: the
    user's own files and options, or a manifest path that is no readable file).
    """
    known = [str(f) for f in OutputFormat]
    if unknown := [f for f in formats if f not in known]:
        raise InputError(
            None, "--format", f"expected one of {', '.join(known)}, got {unknown[0]!r}"
        )
    wanted = tuple(dict.fromkeys(OutputFormat(f) for f in formats)) or (OutputFormat.qcow2,)
    image_given = image is not None
    if all_formats:
        wanted = (OutputFormat.qcow2,)
        if artifact_dir is None or image_given:
            raise InputError(None, "--all", "expected an artifact folder, not an image")
    if image_given and len(wanted) > 1:
        raise InputError(None, "--format", "expected one format: the image's")
    if artifact_dir is not None:
        if not artifact_dir.is_dir():
            raise InputError(artifact_dir, None, "expected an artifact folder")
        image = image or artifact_dir / file_name(wanted[0])
        manifest = manifest or artifact_dir / MANIFEST_NAME
    if image is None or manifest is None:
        raise InputError(None, None, "expected an artifact folder, or both an image and manifest")
    if not 1 <= threshold <= MAX_SIGNATURES:
        raise InputError(None, "--threshold", f"expected 1 to {MAX_SIGNATURES}")
    if not keys:
        raise InputError(None, "--key", "expected at least one trusted public key")
    trusted = [k if isinstance(k, PublicKey) else load_public_key(k) for k in keys]
    if isinstance(policy, Path):
        policy = Policy.load(policy)
    policy = policy or Policy()
    outputs_match = OutputsMatch(wanted, None if image_given else artifact_dir, all_formats)
    image_checks = [] if wanted == (OutputFormat.qcow2,) and not all_formats else [outputs_match]
    # Bad pins are bad input, before anything is read.
    checks = policy.checks(threshold, pins, image_checks)
    moment = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    if not image.exists():
        raise InputError(image, None, "image not found")
    if not image.is_file():
        raise InputError(image, None, f"expected the {wanted[0]} image, a regular file")

    try:
        envelope = load_envelope(manifest)
        signers = check_signatures(envelope, trusted, manifest)
    except EnvelopeError as exc:
        raise VerificationError(exc.message) from None
    claims = read_claims(envelope.payload, manifest)
    evidence = Evidence(image=image, manifest=manifest, claims=claims, signers=signers, now=moment)
    checks(evidence)
    # The SBOM and provenance beside the manifest: the same keys, the same image.
    try:
        attested = verify_attestations(
            manifest.parent,
            envelope.payload,
            trusted,
            threshold=max(threshold, policy.threshold),
            revoked=policy.revoked_keys,
        )
    except AttestationError as exc:
        raise VerificationError(exc.message) from None
    by_id = {k.keyid: k for k in trusted}
    return Verdict(
        image=image,
        manifest=manifest,
        signers=tuple(by_id[k] for k in sorted(signers - policy.revoked_keys)),
        threshold=max(threshold, policy.threshold),
        claims=claims,
        formats=tuple(str(f) for f in outputs_match.chosen(claims)),
        attestations=attested,
    )


def check_signatures(
    envelope: Envelope, trusted: Sequence[PublicKey], manifest: Path
) -> frozenset[str]:
    """The keyids of trusted keys that signed; refuses when there are none.

    The statement is not read at all until a trusted signature covers it.
    """
    if envelope.payload_type != PAYLOAD_TYPE_IN_TOTO:
        raise VerificationError(
            f"{manifest}: payloadType is {escape(repr(envelope.payload_type))}; "
            f"expected {PAYLOAD_TYPE_IN_TOTO!r}"
        )
    signers = verified_keyids(envelope, trusted)
    if signers:
        return signers
    trusted_ids = {k.keyid for k in trusted}
    claimed = [s.keyid for s in envelope.signatures]
    matching = sorted(trusted_ids.intersection(claimed))
    # keyids are hints, not proof; they only make the message precise.
    if matching:
        raise VerificationError(
            f"{manifest}: the signature by trusted key {matching[0]} does not verify; "
            "the envelope was altered after signing"
        )
    raise VerificationError(
        f"{manifest}: not signed by any trusted key (signed by "
        f"{', '.join(escape(k, 80) if k else '<no keyid>' for k in claimed)}; "
        f"trusted: {', '.join(sorted(trusted_ids))})"
    )
