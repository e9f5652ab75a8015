"""The template statement has one decoder (validate.statement: parse_statement,
then decode_payload reading every field through statement_fields.Fields) and
two modes: lenient for report, history and outdated (bad input, exit 2), of
which the report's ManifestClaims and history's and outdated's ManifestFacts
are views; strict after the signatures for verify (not trusted, exit 1), of
which verify's Claims is the view."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from builder.errors import InputError
from builder.manifest_facts import read_manifest
from validate.claims import VerificationError
from validate.claims import read_claims as read_verified_claims
from validate.dsse import PAYLOAD_TYPE_IN_TOTO, Envelope, load_envelope
from validate.manifest_report import read_claims as read_report_claims
from validate.statement import (
    PREDICATE_TYPE,
    LenientFields,
    StatementError,
    decode_statement,
    parse_statement,
)

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "tests" / "data" / "golden" / "debian-12-baseline-1.0.0" / "manifest.dsse.json"
SOURCE = Path("manifest.dsse.json")


def golden_payload() -> bytes:
    return load_envelope(MANIFEST).payload


def test_both_modes_read_the_golden_statement() -> None:
    payload = golden_payload()
    assert parse_statement(payload)["predicateType"] == PREDICATE_TYPE
    strict = read_verified_claims(payload, MANIFEST)
    lenient = read_report_claims(MANIFEST)
    facts = read_manifest(MANIFEST)
    assert strict.template_name == lenient.template_name == facts.name == "debian-12-baseline"
    assert strict.profile_digest == lenient.profile_digest == facts.profile_digest


@pytest.mark.parametrize(
    ("payload", "field", "verify_says"),
    [
        (b"{", "payload", "not an acceptable in-toto statement"),
        (b"[]", "payload", "not a JSON object"),
        (b'{"_type": "x"}', "payload._type", "statement _type is 'x'"),
        (
            json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": 1}).encode(),
            "payload.predicateType",
            "predicateType is 1",
        ),
    ],
)
def test_one_refusal_two_modes(payload: bytes, field: str, verify_says: str) -> None:
    with pytest.raises(StatementError):
        parse_statement(payload)
    envelope = Envelope(PAYLOAD_TYPE_IN_TOTO, payload, ())
    with pytest.raises(InputError) as lenient:
        decode_statement(SOURCE, envelope)
    assert lenient.value.exit_code == 2 and lenient.value.field == field
    with pytest.raises(VerificationError, match=verify_says) as strict:
        read_verified_claims(payload, SOURCE)
    assert strict.value.exit_code == 1


def test_lenient_fields_read_absent_as_none_and_refuse_wrong_types() -> None:
    fields = LenientFields(SOURCE, "payload", {"a": {"b": 1}, "s": "x", "l": [{}]})
    assert fields.text("missing") is None and fields.obj("missing").data == {}
    assert fields.obj("a").integer("b") == 1 and fields.need("s") == "x"
    assert [o.where for o in fields.objs("l")] == ["payload.l[0]"]
    with pytest.raises(InputError, match=r"payload\.a\.b: expected a string"):
        fields.obj("a").text("b")
    with pytest.raises(InputError, match=r"payload\.s: expected a JSON object"):
        fields.obj("s")


def write_golden_with(tmp_path: Path, change: Any) -> Path:
    envelope = json.loads(MANIFEST.read_bytes())
    statement = json.loads(golden_payload())
    change(statement["predicate"])
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path = tmp_path / "manifest.dsse.json"
    path.write_text(json.dumps(envelope))
    return path


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p["results"]["controls"][0].update(status="fine"), "results.controls[0]"),
        (lambda p: p["tools"].update(qemu=7), "tools.qemu"),
        (lambda p: p["base"][0]["digest"].update(sha512=1), "base[0].digest.sha512"),
        (lambda p: p["template"].update(virtualSize="1"), "template.virtualSize"),
    ],
)
def test_the_lenient_views_refuse_alike(tmp_path: Path, change: Any, field: str) -> None:
    """Report, history and outdated read one decoding: what one refuses, all refuse."""
    path = write_golden_with(tmp_path, change)
    errors = []
    for read in (read_report_claims, read_manifest):
        with pytest.raises(InputError) as info:
            read(path)
        errors.append((info.value.field, info.value.exit_code))
    assert errors == [(f"payload.predicate.{field}", 2)] * 2


def test_history_needs_what_the_page_shows_as_a_gap(tmp_path: Path) -> None:
    """A statement without a template name renders (a gap on the page), but a
    rebuild decision cannot be made without it."""
    path = write_golden_with(tmp_path, lambda p: p["template"].pop("name"))
    assert read_report_claims(path).template_name is None
    with pytest.raises(InputError) as info:
        read_manifest(path)
    assert info.value.field == "payload.predicate.template.name"
