"""The statement's one decoder (validate.statement.decode_payload) in its two
modes: verify's Claims and the lenient Statement of report, history and
outdated come from the same reading of the same fields; what verify decides
nothing on, it does not read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_statement_modes import MANIFEST, golden_payload

import validate.claims
import validate.statement
from builder.errors import InputError
from validate.claims import Claims, VerificationError, read_claims
from validate.dsse import load_envelope
from validate.statement import (
    LenientFields,
    Statement,
    StrictFields,
    decode_payload,
    parse_statement,
    read_statement,
)
from validate.statement_fields import Fields


def golden() -> dict[str, Any]:
    return parse_statement(golden_payload())


def encode(statement: dict[str, Any]) -> bytes:
    return json.dumps(statement).encode()


def test_both_modes_call_the_one_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    assert vars(validate.claims)["decode_payload"] is decode_payload
    modes: list[type[Fields]] = []

    def spy(payload: Fields) -> Statement:
        modes.append(type(payload))
        return decode_payload(payload)

    monkeypatch.setattr(validate.claims, "decode_payload", spy)
    monkeypatch.setattr(validate.statement, "decode_payload", spy)
    read_claims(load_envelope(MANIFEST).payload, MANIFEST)
    read_statement(MANIFEST, load_envelope(MANIFEST))
    assert modes == [StrictFields, LenientFields]


def test_the_two_modes_agree_on_what_verify_reads() -> None:
    strict = decode_payload(StrictFields(MANIFEST, "payload", golden()))
    lenient = decode_payload(LenientFields(MANIFEST, "payload", golden()))
    for field in (
        "template_name",
        "template_version",
        "template_format",
        "virtual_size",
        "profile_id",
        "profile_version",
        "profile_digest",
        "approved",
        "counts",
        "statuses",
        "approval_time",
        "approval_keyid",
        "approval_valid_until",
    ):
        assert getattr(strict, field) == getattr(lenient, field), field
    assert strict.subjects[0].name == lenient.subjects[0].name
    assert set(strict.subjects[0].digests) <= set(lenient.subjects[0].digests)
    assert Claims.of(strict) == read_claims(encode(golden()), MANIFEST)
    # What verify decides nothing on is not read in the strict mode.
    assert lenient.packages and lenient.bases and lenient.controls
    assert not (strict.packages or strict.bases or strict.controls or strict.tools)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p["sbom"]["packages"][0].update(version=7), "sbom.packages[0].version"),
        (lambda p: p.update(sbom="not an object"), "sbom"),
        (lambda p: p["tools"].update(qemu=7), "tools.qemu"),
        (lambda p: p["base"][0]["digest"].update(sha512=1), "base[0].digest.sha512"),
        (lambda p: p.update(waivers={}), "waivers"),
        (lambda p: p["build"].update(started=1), "build.started"),
        (lambda p: p["results"]["controls"][0].pop("title"), "results.controls[0]"),
    ],
)
def test_a_section_verify_ignores_stays_ignored(change: Any, field: str) -> None:
    """Malformed only where verify decides nothing: the lenient mode refuses it
    (exit 2), verify reads the very same claims as from the intact statement."""
    statement = golden()
    change(statement["predicate"])
    with pytest.raises(InputError) as lenient:
        decode_payload(LenientFields(MANIFEST, "payload", statement))
    assert lenient.value.field == f"payload.predicate.{field}"
    assert read_claims(encode(statement), MANIFEST) == read_claims(encode(golden()), MANIFEST)


def test_a_field_verify_reads_is_refused_in_both_modes_with_its_own_words() -> None:
    statement = golden()
    statement["predicate"]["template"]["virtualSize"] = "1"
    with pytest.raises(InputError, match=r"template\.virtualSize: expected an integer"):
        decode_payload(LenientFields(MANIFEST, "payload", statement))
    with pytest.raises(
        VerificationError, match=r"statement payload\.predicate\.template\.virtualSize: expected"
    ) as strict:
        read_claims(encode(statement), MANIFEST)
    assert strict.value.exit_code == 1


def test_absent_reads_as_none_leniently_and_as_missing_strictly() -> None:
    statement = golden()
    del statement["predicate"]["approval"]
    assert decode_payload(LenientFields(MANIFEST, "payload", statement)).approval_time is None
    with pytest.raises(InputError, match=r"payload\.predicate\.approval\.time: missing"):
        decode_payload(StrictFields(MANIFEST, "payload", statement))
