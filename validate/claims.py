"""What a signed template statement claims, read strictly: ``goldsmith verify``'s view.

The statement is read only after a trusted signature over it verified
(validate/verify.py), by the one decoder of the statement
(validate/statement.py's ``parse_statement`` and ``decode_payload``) in its
strict mode; ``Claims`` is the view of that decoding verify decides on.
Anything malformed, ambiguous or out of shape inside a signed envelope is not
trusted: a ``VerificationError`` (exit 1), never a traceback.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

from builder.errors import GoldsmithError, InputError
from hardening.strictdata import escape
from validate.outputs import OutputSubject
from validate.statement import (
    PlatformClaims,
    Statement,
    StatementError,
    StrictFields,
    decode_payload,
    parse_statement,
    parse_time,
)
from validate.statement_fields import known


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

    @classmethod
    def of(cls, statement: Statement) -> Claims:
        """The claims of a statement decoded strictly, which refused it unless
        every field here was there and held to verify's checks."""
        subject = statement.subjects[0]
        digests = dict(subject.digests)
        return cls(
            subject_name=subject.name,
            sha256=digests["sha256"],
            sha512=digests["sha512"],
            template_name=known(statement.template_name),
            template_version=known(statement.template_version),
            image_format=known(statement.template_format),
            virtual_size=known(statement.virtual_size),
            profile_id=known(statement.profile_id),
            profile_version=known(statement.profile_version),
            profile_digest=known(statement.profile_digest),
            approved=known(statement.approved),
            counts=known(statement.counts),
            controls=dict(statement.statuses),
            approval_time=known(parse_time(known(statement.approval_time))),
            approval_keyid=known(statement.approval_keyid),
            valid_until=known(parse_time(known(statement.approval_valid_until))),
            outputs=statement.outputs,
            platform=statement.platform,
        )


def read_claims(payload: bytes, source: Path) -> Claims:
    """The claims of a signed statement; VerificationError for anything malformed,
    ambiguous or out of shape: inside a signed envelope that is not trusted."""
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
    try:
        return Claims.of(decode_payload(StrictFields(source, "payload", doc)))
    except InputError as exc:
        raise VerificationError(f"{source}: statement {exc.field or ''}: {exc.expected}") from None
