"""``goldsmith verify``: is this image the approved, signed template it claims to be?

Everything is recomputed, in this order: the signatures over the exact envelope
bytes (PAE of the decoded payload, never re-serialised JSON) and the number of
distinct trusted, unrevoked keys that made them; then the statement's types;
then the policy (expiry always, approval always, profile, age, required
controls); then the image itself: its qcow2 header must not point outside the
file, and its sha256 and sha512 must match the subject. The image is hashed
last only because it is the slow part; every check must pass.

The statement's claims are read by validate/claims.py, the checks are
validate/trust_checks.py's (each a small callable that raises
VerificationError, composed with AllOf, and an AllOf with nothing in it
refuses rather than passes), and which of them run is decided by
validate/policy.py's ``Policy`` and ``Pins``.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from builder.errors import GoldsmithError, InputError
from builder.formats import OutputFormat, file_name
from hardening.strictdata import escape
from validate.attestations import AttestationError, Attested, verify_attestations
from validate.claims import Claims, VerificationError, read_claims
from validate.dsse import (
    MAX_SIGNATURES,
    PAYLOAD_TYPE_IN_TOTO,
    Envelope,
    EnvelopeError,
    load_envelope,
    verified_keyids,
)
from validate.keys import PublicKey, load_public_key
from validate.manifest import MANIFEST_NAME, format_time
from validate.policy import Pins, Policy
from validate.trust_checks import Evidence, OutputsMatch


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
