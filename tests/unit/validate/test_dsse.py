"""DSSE envelopes: PAE test vectors, signing, parsing and exact-bytes verification."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from builder.errors import InputError
from validate.dsse import (
    MAX_SIGNATURES,
    PAYLOAD_TYPE_IN_TOTO,
    Envelope,
    EnvelopeError,
    Signature,
    load_envelope,
    pae,
    parse_envelope,
    sign_envelope,
    verified_keyids,
)
from validate.keys import KeyType, PrivateKey, generate_key

STATEMENT = b'{"_type":"https://in-toto.io/Statement/v1"}'

# Ed25519 is deterministic: this key (seed bytes 0..31) always gives this signature
# over PAE(in-toto, STATEMENT). openssl agrees (see test_interop).
SEED_KEY = PrivateKey(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
SEED_KEYID = "a050837d85070582ccf7394b0988847cc312cb88259b894899f6f239cf1791a5"
SEED_SIG = bytes.fromhex(
    "168ea33973fd830d72c4516a7314f739138683d30727d1b63ecdb2086e25add2"
    "52f18962f71747efcaf3b0645d5fbbcdd01bd99ed78d18f83d17bf421b9d540d"
)


def test_pae_vector_from_the_dsse_specification() -> None:
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_vector_for_an_in_toto_statement() -> None:
    assert (
        pae(PAYLOAD_TYPE_IN_TOTO, STATEMENT)
        == b'DSSEv1 28 application/vnd.in-toto+json 43 {"_type":"https://in-toto.io/Statement/v1"}'
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t/\u00e9", "\u00e9\u00e9".encode()) == b"DSSEv1 4 t/\xc3\xa9 4 \xc3\xa9\xc3\xa9"


def test_pae_of_an_empty_payload() -> None:
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_pae_lengths_keep_fields_apart() -> None:
    # Moving a byte across the boundary changes the encoding.
    assert pae("ab", b"c") != pae("a", b"bc")


def test_ed25519_signature_vector() -> None:
    assert SEED_KEY.keyid == SEED_KEYID
    envelope = sign_envelope(PAYLOAD_TYPE_IN_TOTO, STATEMENT, [SEED_KEY])
    assert envelope.signatures == (Signature(SEED_KEYID, SEED_SIG),)
    assert envelope.to_dict() == {
        "payloadType": "application/vnd.in-toto+json",
        "payload": "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ==",
        "signatures": [{"keyid": SEED_KEYID, "sig": base64.b64encode(SEED_SIG).decode()}],
    }


@pytest.mark.parametrize("key_type", list(KeyType))
def test_round_trip_through_json(key_type: KeyType) -> None:
    key = generate_key(key_type)
    envelope = sign_envelope(PAYLOAD_TYPE_IN_TOTO, STATEMENT, [key])
    parsed = parse_envelope(envelope.to_json(), "mem")
    assert parsed == envelope
    assert verified_keyids(parsed, [key.public]) == {key.keyid}
    assert verified_keyids(parsed, [generate_key(key_type).public]) == frozenset()


def test_p256_signature_is_der() -> None:
    key = generate_key(KeyType.p256)
    sig = sign_envelope(PAYLOAD_TYPE_IN_TOTO, STATEMENT, [key]).signatures[0].sig
    assert sig[0] == 0x30 and sig[1] == len(sig) - 2  # a DER SEQUENCE, not raw r||s


def test_payload_bytes_are_verified_as_they_travel() -> None:
    # Odd whitespace and key order: re-serialising would change the bytes and break this.
    payload = b'{ "predicateType" : "x",\n  "_type":"https://in-toto.io/Statement/v1" }'
    envelope = sign_envelope(PAYLOAD_TYPE_IN_TOTO, payload, [SEED_KEY])
    parsed = parse_envelope(envelope.to_json(), "mem")
    assert parsed.payload == payload
    assert verified_keyids(parsed, [SEED_KEY.public]) == {SEED_KEYID}


def test_payload_type_is_covered_by_the_signature() -> None:
    envelope = sign_envelope(PAYLOAD_TYPE_IN_TOTO, STATEMENT, [SEED_KEY])
    other = Envelope("application/json", envelope.payload, envelope.signatures)
    assert verified_keyids(other, [SEED_KEY.public]) == frozenset()


def test_a_key_counts_once_however_often_it_signed_or_is_listed() -> None:
    envelope = sign_envelope(PAYLOAD_TYPE_IN_TOTO, STATEMENT, [SEED_KEY, SEED_KEY])
    assert len(envelope.signatures) == 2
    assert verified_keyids(envelope, [SEED_KEY.public, SEED_KEY.public]) == {SEED_KEYID}


def test_keyid_hint_is_not_trusted() -> None:
    # A signature that claims a trusted keyid but was made by another key does not count.
    stranger = generate_key()
    envelope = sign_envelope(PAYLOAD_TYPE_IN_TOTO, STATEMENT, [stranger])
    lying = Envelope(
        envelope.payload_type,
        envelope.payload,
        (Signature(SEED_KEYID, envelope.signatures[0].sig),),
    )
    assert verified_keyids(lying, [SEED_KEY.public]) == frozenset()


def test_url_safe_and_unpadded_base64_are_accepted() -> None:
    payload = b"\xfb\xff" * 5  # encodes with + and / in standard base64
    envelope = sign_envelope("application/octet-stream", payload, [SEED_KEY])
    doc = envelope.to_dict()
    doc["payload"] = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    parsed = parse_envelope(json.dumps(doc).encode(), "mem")
    assert parsed.payload == payload


def test_sign_needs_a_signer() -> None:
    with pytest.raises(ValueError, match=r"at least one signer"):
        sign_envelope(PAYLOAD_TYPE_IN_TOTO, STATEMENT, [])


GOOD = sign_envelope(PAYLOAD_TYPE_IN_TOTO, STATEMENT, [SEED_KEY]).to_json()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello", "m.json: is not JSON; expected a DSSE envelope"),
        (b"\xff\xfe{", r"m.json: is not JSON \(not UTF-8 text\)"),
        (
            GOOD[: len(GOOD) // 2],
            r"m.json: ends before the JSON object is complete \(truncated\?\)",
        ),
        (b'{"payloadType": }', "m.json: is malformed JSON"),
        (b"[]", r"m.json: expected a DSSE envelope \(JSON object .*found JSON list"),
        (b'{"payload": "", "signatures": []}', "m.json: payloadType: expected a non-empty string"),
        (b'{"payloadType": "t", "signatures": []}', "m.json: payload: expected a base64 string"),
        (b'{"payloadType": "t", "payload": "e30="}', "m.json: signatures: expected a non-empty"),
        (
            b'{"payloadType": "t", "payload": "e30=", "signatures": [{"keyid": "k"}]}',
            r"m.json: signatures\[0\].sig: expected a base64 string",
        ),
        (
            b'{"payloadType": "t", "payload": "e30*", "signatures": [{"sig": "AA=="}]}',
            "m.json: payload: expected canonical base64",
        ),
    ],
)
def test_parse_errors_name_the_file_and_field(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_envelope(data, "m.json")
    assert caught.value.exit_code == 2


def test_a_missing_keyid_is_allowed() -> None:
    data = b'{"payloadType": "t", "payload": "e30=", "signatures": [{"sig": "AA=="}]}'
    assert parse_envelope(data, "m").signatures == (Signature("", b"\x00"),)


def test_load_envelope_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not found; expected a DSSE envelope file"):
        load_envelope(tmp_path / "manifest.dsse.json")


def test_load_envelope_refuses_a_huge_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("validate.dsse.MAX_ENVELOPE_BYTES", 1000)
    path = tmp_path / "manifest.dsse.json"
    path.write_bytes(b" " * 1001)
    with pytest.raises(InputError, match=r"larger than 1000 bytes"):
        load_envelope(path)
    with pytest.raises(InputError, match=r"is a directory"):
        load_envelope(tmp_path)


# --- ambiguity and hostility: refused before any crypto ----------------------------------


def good_dict() -> dict[str, Any]:
    return sign_envelope(PAYLOAD_TYPE_IN_TOTO, STATEMENT, [SEED_KEY]).to_dict()


@pytest.mark.parametrize("key", ["payload", "payloadType", "signatures"])
def test_a_duplicated_envelope_key_is_refused(key: str) -> None:
    # Two "payload" keys: one reader takes the first, another the last.
    text = GOOD.decode().rstrip().removesuffix("}")
    text += f', "{key}": ' + json.dumps(good_dict()[key]) + "}"
    with pytest.raises(EnvelopeError, match=rf"duplicate key '{key}'"):
        parse_envelope(text.encode(), "m.json")


def test_more_than_the_cap_of_signatures_is_refused_unread() -> None:
    doc = good_dict()
    doc["signatures"] = doc["signatures"] * (MAX_SIGNATURES + 1)
    for i, entry in enumerate(doc["signatures"]):
        doc["signatures"][i] = {**entry, "keyid": f"k{i}"}
    with pytest.raises(EnvelopeError, match=rf"17 signatures; at most {MAX_SIGNATURES}"):
        parse_envelope(json.dumps(doc).encode(), "m.json")


def test_a_flood_of_signatures_is_refused_fast() -> None:
    doc = good_dict()
    bogus = base64.b64encode(bytes(64)).decode()
    doc["signatures"] = [{"keyid": f"{i:064x}", "sig": bogus} for i in range(200_000)]
    data = json.dumps(doc).encode()
    start = time.monotonic()
    with pytest.raises(EnvelopeError, match=r"at most 16 signatures"):
        parse_envelope(data, "m.json")
    assert time.monotonic() - start < 1.0  # 58 s before the cap


def test_duplicate_keyids_are_refused() -> None:
    doc = good_dict()
    doc["signatures"] = doc["signatures"] * 2
    with pytest.raises(EnvelopeError, match=r"signatures\[1\].keyid: duplicate keyid"):
        parse_envelope(json.dumps(doc).encode(), "m.json")


@pytest.mark.parametrize(
    ("where", "message"),
    [("envelope", "unknown envelope field"), ("signature", "unknown signature field")],
)
def test_unsigned_extra_fields_are_refused(where: str, message: str) -> None:
    doc = good_dict()
    target = doc if where == "envelope" else doc["signatures"][0]
    target["note"] = "not covered by any signature"
    with pytest.raises(EnvelopeError, match=message):
        parse_envelope(json.dumps(doc).encode(), "m.json")


@pytest.mark.parametrize(
    ("variant", "accepted"),
    [
        ("eyJhIjoxfQ==", True),  # standard, padded
        ("eyJhIjoxfQ", True),  # unpadded
        ("eyJhIjoxfR==", False),  # non-zero bits after the last byte: same bytes, other text
        ("eyJhIjox fQ==", False),  # whitespace
        ("eyJhIjoxfQ=", False),  # half the padding
        ("eyJhIjoxfQ===", False),  # too much padding
        ("eyJhIjoxfQ==eyJ9", False),  # data after padding
        ("+-//", False),  # two alphabets at once
        ("eyJhIjoxfQ\u00e9", False),  # not ASCII
        ("e", False),  # one character cannot encode a byte
    ],
)
def test_base64_must_be_canonical(variant: str, accepted: bool) -> None:
    doc = good_dict()
    doc["payload"] = variant
    data = json.dumps(doc).encode()
    if accepted:
        assert parse_envelope(data, "m").payload == b'{"a":1}'
    else:
        with pytest.raises(EnvelopeError, match=r"payload: expected canonical base64"):
            parse_envelope(data, "m")


def test_url_safe_base64_must_use_one_alphabet() -> None:
    payload = b"\xfb\xff\xbf" * 4
    url_safe = base64.urlsafe_b64encode(payload).decode()
    assert "-" in url_safe and "_" in url_safe
    doc = good_dict()
    doc["payload"] = url_safe
    assert parse_envelope(json.dumps(doc).encode(), "m").payload == payload
    doc["payload"] = url_safe.replace("-", "+", 1)  # mixed: one '+' among '-' and '_'
    with pytest.raises(EnvelopeError, match=r"canonical base64"):
        parse_envelope(json.dumps(doc).encode(), "m")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[" * 1000 + b"]" * 1000, "nested deeper"),
        (b'{"payloadType": 1' + b"0" * 5000 + b"}", "more than 30 digits"),
        (b'{"payloadType": "\\ud800", "payload": "", "signatures": []}', "lone surrogate"),
        (b'{"payloadType": NaN}', "not a JSON number"),
    ],
)
def test_hostile_json_is_refused_in_one_line(data: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message) as caught:
        parse_envelope(data, "m.json")
    assert "\n" not in caught.value.diagnostics()


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "manifest.dsse.json"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"not a regular file"):
        load_envelope(fifo)
    with pytest.raises(InputError, match=r"not a regular file"):
        load_envelope(Path("/dev/zero"))


def test_a_signature_counts_only_under_its_own_keyid_or_none() -> None:
    envelope = sign_envelope(PAYLOAD_TYPE_IN_TOTO, STATEMENT, [SEED_KEY])
    sig = envelope.signatures[0].sig
    for keyid, counted in ((SEED_KEYID, True), ("", True), ("ab" * 32, False), ("k", False)):
        relabelled = Envelope(envelope.payload_type, envelope.payload, (Signature(keyid, sig),))
        assert verified_keyids(relabelled, [SEED_KEY.public]) == (
            {SEED_KEYID} if counted else frozenset()
        )
