"""The template statement: its types, its one decoder, and its lenient reading.

Every reader of goldsmith's in-toto statement starts from ``parse_statement``:
the payload's JSON under the strict reading rules, an in-toto Statement v1 of
the template predicate type. Then one of two modes:

- strict, and only after the signatures over it verified: ``goldsmith verify``
  reads the claims it decides on (validate/claims.py's ``read_claims``, the
  ``Claims`` view); a malformed statement is "not trusted", exit 1.
- lenient, for questions other than trust (``report``, ``history``,
  ``outdated``): ``read_statement`` decodes the statement an envelope carries,
  WITHOUT verifying it, into one ``Statement``, field by field through
  ``LenientFields``: an absent field reads as None, a present one of the wrong
  type is bad input (exit 2). The report's ``ManifestClaims``
  (validate/manifest_report.py) and history's and outdated's ``ManifestFacts``
  (builder/manifest_facts.py) are views of that one ``Statement``, so a
  manifest one of them refuses, the others refuse too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from builder.errors import InputError
from hardening.results import CheckResult, Status
from hardening.strictdata import DataError, loads_json
from validate.dsse import PAYLOAD_TYPE_IN_TOTO, Envelope, EnvelopeError
from validate.results import Package

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://goldsmith.dev/template/v1"


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
    Nothing else is checked here: each mode reads the fields it needs."""
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


class LenientFields:
    """One JSON object of a document read leniently, with its dotted path for
    messages: an absent field reads as None (an absent object as empty, an
    absent list as []); a present field of the wrong type is an InputError."""

    def __init__(self, source: Path, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise InputError(source, where or None, "expected a JSON object")
        self.source, self.where, self.data = source, where, data

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, expected: str) -> NoReturn:
        raise InputError(self.source, self.path(key), expected)

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or (required and not value):
            self.fail(key, "expected a string")
        return value

    def need(self, key: str) -> str:
        """A string that must be there and not empty."""
        value = self.text(key, required=True)
        assert value is not None
        return value

    def integer(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, "expected an integer")
        return value

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.fail(key, "expected true or false")
        return value

    def obj(self, key: str) -> LenientFields:
        value = self.data.get(key)
        return LenientFields(self.source, self.path(key), {} if value is None else value)

    def raw_list(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, "expected a list")
        return value

    def objs(self, key: str) -> list[LenientFields]:
        return [
            LenientFields(self.source, self.path(f"{key}[{i}]"), value)
            for i, value in enumerate(self.raw_list(key))
        ]

    def strings(self, key: str) -> tuple[tuple[str, str], ...]:
        """An object whose values are all strings, e.g. a digest set or a tool list."""
        fields = self.obj(key)
        pairs = []
        for name, value in fields.data.items():
            if not isinstance(value, str):
                fields.fail(str(name), "expected a string")
            pairs.append((str(name), value))
        return tuple(pairs)


# --- the statement, read leniently ---------------------------------------------------

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
class Statement:
    """Every field of a template statement, decoded leniently from an envelope
    that has NOT been verified: None (or empty) where the statement says nothing."""

    subjects: tuple[Subject, ...]
    template_name: str | None
    template_version: str | None
    template_format: str | None
    virtual_size: int | None
    bases: tuple[BaseImage, ...]
    profile_id: str | None
    profile_version: str | None
    profile_digest: str | None
    approved: bool | None
    counts: dict[str, int] | None  # as claimed; compare with the controls listed
    controls: tuple[CheckResult, ...]
    waivers: tuple[Waiver, ...]
    sbom_format: str | None
    packages: tuple[Package, ...]  # a name or version the statement lacks reads as ""
    builder_id: str | None
    builder_version: str | None
    tools: tuple[tuple[str, str], ...]
    inputs: tuple[InputRef, ...]
    # path (relative to the spec) -> sha256 of every provisioning input, or
    # None for a manifest from before provisioning was recorded.
    provision_inputs: Mapping[str, str] | None
    build_accelerator: str | None
    build_started: str | None
    build_finished: str | None
    build_record_sha256: str | None
    validation_accelerator: str | None
    validation_finished: str | None
    validation_record_sha256: str | None
    approval_time: str | None
    approval_keyid: str | None
    approval_valid_until: str | None
    previous_manifest_sha256: str | None
    attestation_refs: tuple[AttestationRef, ...]

    def input_sha256(self, label: str) -> str | None:
        """The sha256 of the input named ``label`` ("spec", "profile"), if listed."""
        for ref in self.inputs:
            if ref.label == label:
                return dict(ref.digests).get("sha256")
        return None


def read_statement(path: Path, envelope: Envelope) -> Statement:
    """The statement ``envelope`` (read from ``path``) carries, decoded but NOT
    verified; InputError (an EnvelopeError for the payload itself) if malformed."""
    payload = LenientFields(path, "payload", decode_statement(path, envelope))
    predicate = payload.obj("predicate")
    template = predicate.obj("template")
    profile = predicate.obj("profile")
    results = predicate.obj("results")
    sbom = predicate.obj("sbom")
    builder = predicate.obj("builder")
    build = predicate.obj("build")
    validation = predicate.obj("validation")
    approval = predicate.obj("approval")
    inputs = predicate.obj("inputs")
    return Statement(
        subjects=tuple(
            Subject(s.text("name") or "", s.strings("digest")) for s in payload.objs("subject")
        ),
        template_name=template.text("name"),
        template_version=template.text("version"),
        template_format=template.text("format"),
        virtual_size=template.integer("virtualSize"),
        bases=tuple(_read_base(b) for b in predicate.objs("base")),
        profile_id=profile.text("id"),
        profile_version=profile.text("version"),
        profile_digest=profile.text("digest"),
        approved=results.flag("approved"),
        counts=_read_counts(results),
        controls=_read_controls(results),
        waivers=tuple(
            Waiver(w.text("control") or "", w.text("reason") or "", w.text("expires"))
            for w in predicate.objs("waivers")
        ),
        sbom_format=sbom.text("format"),
        packages=_read_packages(sbom),
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
        approval_time=approval.text("time"),
        approval_keyid=approval.text("keyid"),
        approval_valid_until=approval.text("validUntil"),
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


def _read_base(item: LenientFields) -> BaseImage:
    inputs = item.data.get("inputs")
    return BaseImage(
        item.text("name"),
        item.text("source"),
        item.text("uri"),
        item.strings("digest"),
        inputs if isinstance(inputs, dict) else None,
    )


def _read_controls(results: LenientFields) -> tuple[CheckResult, ...]:
    controls = []
    seen: set[str] = set()
    for i, raw in enumerate(results.raw_list("controls")):
        field = results.path(f"controls[{i}]")
        if not isinstance(raw, dict):
            raise InputError(results.source, field, "expected a result object")
        try:
            control = CheckResult.from_dict(raw)
        except KeyError as exc:
            raise InputError(results.source, field, f"missing {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise InputError(results.source, field, f"expected a result object ({exc})") from None
        # A control listed failed and then passed would show a reader both;
        # verify refuses such a manifest, so no lenient reader pretends to read it.
        if control.id in seen:
            raise InputError(results.source, f"{field}.id", f"duplicate control id {control.id!r}")
        seen.add(control.id)
        controls.append(control)
    return tuple(controls)


def _read_counts(results: LenientFields) -> dict[str, int] | None:
    if results.data.get("counts") is None:
        return None
    counts = results.obj("counts")
    return {str(s): counts.integer(str(s)) or 0 for s in Status}


def _read_packages(sbom: LenientFields) -> tuple[Package, ...]:
    return tuple(
        Package(p.text("name") or "", p.text("version") or "", p.text("architecture") or "")
        for p in sbom.objs("packages")
    )


def _read_provision_inputs(predicate: LenientFields) -> Mapping[str, str] | None:
    if "provision" not in predicate.data:
        return None
    return {
        i.need("path"): i.need("sha256")
        for step in predicate.objs("provision")
        for i in step.objs("inputs")
    }
