"""The checks ``goldsmith verify`` runs on the claims of a signed statement.

Each check is a small callable that raises VerificationError; checks compose
with AllOf, and an AllOf with nothing in it refuses rather than passes. Which
checks run is the policy's (validate/policy.py) and the command line's pins.
"""

from __future__ import annotations

import dataclasses
import datetime
import hmac
import re
from collections.abc import Callable
from pathlib import Path

from builder.formats import OutputFormat, file_name
from builder.log import complete_step
from hardening.results import Status
from hardening.strictdata import escape
from validate.claims import Claims, VerificationError
from validate.manifest import format_time
from validate.outputs import check_output, digest_mismatch
from validate.qcow2 import ImageError, require_self_contained
from validate.results import blocking_statuses, is_approved
from validate.statement import PlatformClaims

# A signer's clock may run a little ahead of ours; more than this is refused.
CLOCK_SKEW = datetime.timedelta(minutes=5)
_NUMERIC_VERSION = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9}){0,15}")


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


# What a pin's refusal calls each claim it compares: "<manifest>: the
# template is 'x'; --name requires 'y'".
_PINNED = {
    "profile_id": "validated against profile",
    "template_name": "the template is",
    "template_version": "the template version is",
}


@dataclasses.dataclass(frozen=True)
class RequiredClaim:
    """A pin on one text claim: the profile's id, the template's name or its version."""

    claim: str  # a key of _PINNED: the Claims attribute compared
    value: str
    origin: str = "the policy"  # who asked: "the policy (required_name)" or "--name"

    def __call__(self, evidence: Evidence) -> None:
        found = getattr(evidence.claims, self.claim)
        if found != self.value:
            raise VerificationError(
                f"{evidence.manifest}: {_PINNED[self.claim]} {escape(repr(found))}; "
                f"{self.origin} requires {escape(repr(self.value))}"
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
        problem = digest_mismatch(
            evidence.image, claims.subject_name, (claims.sha256, claims.sha512)
        )
    if problem:
        raise VerificationError(problem)
