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
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from builder.errors import GoldsmithError, InputError
from builder.log import complete_step
from hardening.results import Status
from validate.dsse import PAYLOAD_TYPE_IN_TOTO, Envelope, load_envelope, verified_keyids
from validate.keys import PublicKey, load_public_key
from validate.manifest import (
    IMAGE_NAME,
    MANIFEST_NAME,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    JsonFields,
    format_time,
)
from validate.qcow2 import ImageError, hash_image, require_self_contained

# A signer's clock may run a little ahead of ours; more than this is refused.
CLOCK_SKEW = datetime.timedelta(minutes=5)
_KEYID = re.compile(r"[0-9a-f]{64}")


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


def read_claims(payload: bytes, source: Path) -> Claims:
    try:
        doc = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(source, "payload", "expected an in-toto statement (JSON)") from None
    if not isinstance(doc, dict):
        raise InputError(source, "payload", "expected an in-toto statement (JSON object)")
    if doc.get("_type") != STATEMENT_TYPE:
        raise VerificationError(
            f"{source}: statement _type is {doc.get('_type')!r}; expected {STATEMENT_TYPE!r}"
        )
    if doc.get("predicateType") != PREDICATE_TYPE:
        raise VerificationError(
            f"{source}: predicateType is {doc.get('predicateType')!r}; expected {PREDICATE_TYPE!r}"
        )
    fields = JsonFields(doc, source, "payload")
    subjects = fields.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1:
        raise InputError(source, "payload.subject", "expected exactly one subject (the image)")
    subject = JsonFields(subjects[0], source, "payload.subject[0]")
    predicate = JsonFields(fields.get("predicate"), source, "payload.predicate")
    counts = predicate.get("results.counts")
    controls = predicate.get("results.controls")
    if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
        raise InputError(source, "payload.predicate.results.counts", "expected integer counts")
    if not isinstance(controls, list):
        raise InputError(source, "payload.predicate.results.controls", "expected a list")
    statuses: dict[str, str] = {}
    for i, control in enumerate(controls):
        entry = JsonFields(control, source, f"payload.predicate.results.controls[{i}]")
        statuses[entry.text("id")] = entry.text("status")
    approved = predicate.get("results.approved")
    if not isinstance(approved, bool):
        raise InputError(source, "payload.predicate.results.approved", "expected true or false")
    return Claims(
        subject_name=subject.text("name"),
        sha256=subject.text("digest.sha256").lower(),
        sha512=subject.text("digest.sha512").lower(),
        template_name=predicate.text("template.name"),
        template_version=predicate.text("template.version"),
        image_format=predicate.text("template.format"),
        virtual_size=predicate.integer("template.virtualSize"),
        profile_id=predicate.text("profile.id"),
        profile_version=predicate.text("profile.version"),
        profile_digest=predicate.text("profile.digest"),
        approved=approved,
        counts=dict(counts),
        controls=statuses,
        approval_time=_read_time(predicate, "approval.time"),
        approval_keyid=predicate.text("approval.keyid"),
        valid_until=_read_time(predicate, "approval.validUntil"),
    )


def _read_time(fields: JsonFields, dotted: str) -> datetime.datetime:
    text = fields.text(dotted)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
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
    blocking = [s for s in claims.controls.values() if s not in (Status.waived, Status.skipped)]
    recounted = bool(blocking) and all(s == Status.passed for s in blocking)
    if not (claims.approved and recounted):
        failing = sum(1 for s in blocking if s != Status.passed)
        raise VerificationError(
            f"{evidence.manifest}: the results are not approved "
            f"({failing} control(s) not passed out of {len(blocking)})"
        )


@dataclasses.dataclass(frozen=True)
class RequiredProfile:
    profile: str

    def __call__(self, evidence: Evidence) -> None:
        if evidence.claims.profile_id != self.profile:
            raise VerificationError(
                f"{evidence.manifest}: validated against profile "
                f"{evidence.claims.profile_id!r}; the policy requires {self.profile!r}"
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
                    f"{evidence.manifest}: required control {control} is {found}, not passed"
                )


def image_self_contained(evidence: Evidence) -> None:
    claims = evidence.claims
    if claims.image_format != "qcow2":
        raise VerificationError(f"{evidence.manifest}: image format {claims.image_format!r}")
    try:
        header = require_self_contained(evidence.image)
    except ImageError as exc:
        raise VerificationError(exc.message) from None
    if header.virtual_size != claims.virtual_size:
        raise VerificationError(
            f"{evidence.image}: virtual size {header.virtual_size} differs from the "
            f"manifest's {claims.virtual_size}; this is not the signed image"
        )


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
                f"{claims.subject_name} ({expected}); the image was altered or is another one"
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

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(path, None, "policy file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(path, None, f"policy file cannot be read ({exc})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(path, None, f"expected YAML ({exc})") from None
        return cls.from_dict(data or {}, path)

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> Policy:
        if not isinstance(data, dict):
            raise InputError(path, None, "expected a mapping of policy settings")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                near = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f"; known keys: {known}"
                raise InputError(path, str(key), f"unknown policy key{hint}")
        values: dict[str, Any] = {}
        if (profile := data.get("required_profile")) is not None:
            if not isinstance(profile, str) or not profile:
                raise InputError(path, "required_profile", "expected a profile id")
            values["required_profile"] = profile
        if data.get("required_result", "approved") != "approved":
            raise InputError(path, "required_result", "expected 'approved' (the only result)")
        if (age := data.get("max_age_days")) is not None:
            if isinstance(age, bool) or not isinstance(age, int | float) or age <= 0:
                raise InputError(path, "max_age_days", "expected a positive number of days")
            values["max_age_days"] = float(age)
        controls = data.get("required_controls") or []
        if not isinstance(controls, list) or not all(isinstance(c, str) for c in controls):
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
            if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
                raise InputError(path, "threshold", "expected an integer of at least 1")
            values["threshold"] = threshold
        return cls(**values)

    def checks(self, threshold: int) -> AllOf:
        """Every check this policy demands; the threshold is the stricter of the two."""
        checks: list[Check] = [
            SignedByThreshold(max(threshold, self.threshold), self.revoked_keys),
            not_expired,  # validUntil is enforced whatever the policy says
            results_approved,  # so is the approval: sign refuses anything else
        ]
        if self.required_profile is not None:
            checks.append(RequiredProfile(self.required_profile))
        if self.max_age_days is not None:
            checks.append(MaxAge(self.max_age_days))
        if self.required_controls:
            checks.append(RequiredControls(self.required_controls))
        checks += [image_self_contained, image_digests_match]
        return AllOf(tuple(checks))


# --- putting it together -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verdict:
    image: Path
    manifest: Path
    signers: tuple[PublicKey, ...]
    threshold: int
    claims: Claims

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
        }

    def describe(self) -> str:
        c = self.claims
        counts = ", ".join(f"{n} {status}" for status, n in c.counts.items())
        signers = ", ".join(f"{k.keyid} ({k.type})" for k in self.signers)
        return "\n".join(
            [
                f"TRUSTED: {c.template_name} {c.template_version} ({self.image})",
                f"  signed by: {signers} [threshold {self.threshold}]",
                f"  profile:   {c.profile_id} {c.profile_version} ({c.profile_digest})",
                f"  results:   approved; {counts}",
                f"  approved:  {format_time(c.approval_time)}, "
                f"valid until {format_time(c.valid_until)}",
                f"  sha256:    {c.sha256}",
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
    now: datetime.datetime | None = None,
) -> Verdict:
    """Verify an artifact folder, or an image and its manifest; the Verdict if trusted.

    Raises VerificationError (not trusted) or InputError (unusable input).
    """
    if artifact_dir is not None:
        image = image or artifact_dir / IMAGE_NAME
        manifest = manifest or artifact_dir / MANIFEST_NAME
    if image is None or manifest is None:
        raise InputError(None, None, "expected an artifact folder, or both an image and manifest")
    if threshold < 1:
        raise InputError(None, "--threshold", "expected at least 1")
    if not keys:
        raise InputError(None, "--key", "expected at least one trusted public key")
    trusted = [k if isinstance(k, PublicKey) else load_public_key(k) for k in keys]
    if isinstance(policy, Path):
        policy = Policy.load(policy)
    policy = policy or Policy()
    moment = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    if not image.is_file():
        raise InputError(image, None, "image not found")

    envelope = load_envelope(manifest)
    signers = check_signatures(envelope, trusted, manifest)
    claims = read_claims(envelope.payload, manifest)
    evidence = Evidence(image=image, manifest=manifest, claims=claims, signers=signers, now=moment)
    policy.checks(threshold)(evidence)
    by_id = {k.keyid: k for k in trusted}
    return Verdict(
        image=image,
        manifest=manifest,
        signers=tuple(by_id[k] for k in sorted(signers - policy.revoked_keys)),
        threshold=max(threshold, policy.threshold),
        claims=claims,
    )


def check_signatures(
    envelope: Envelope, trusted: Sequence[PublicKey], manifest: Path
) -> frozenset[str]:
    """The keyids of trusted keys that signed; refuses when there are none.

    The statement is not read at all until a trusted signature covers it.
    """
    if envelope.payload_type != PAYLOAD_TYPE_IN_TOTO:
        raise VerificationError(
            f"{manifest}: payloadType is {envelope.payload_type!r}; "
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
        f"{', '.join(k or '<no keyid>' for k in claimed)}; "
        f"trusted: {', '.join(sorted(trusted_ids))})"
    )
