"""The template statement has one decoder (validate.manifest.parse_statement) and
two modes: lenient for report, history and outdated (bad input, exit 2), strict
after the signatures for verify (not trusted, exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.manifest_facts import read_manifest
from validate.claims import VerificationError
from validate.claims import read_claims as read_verified_claims
from validate.dsse import PAYLOAD_TYPE_IN_TOTO, Envelope, load_envelope
from validate.manifest import (
    PREDICATE_TYPE,
    LenientFields,
    StatementError,
    decode_statement,
    parse_statement,
)
from validate.manifest_report import read_claims as read_report_claims

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
