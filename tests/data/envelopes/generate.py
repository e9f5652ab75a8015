"""Writes the golden envelopes in this folder: good and evil manifests, fixed forever.

Run from the repository root: .venv/bin/python -m tests.data.envelopes.generate

Like the CVE bundles sigstore-python keeps, these files are regression assets:
the test (tests/unit/validate/test_golden_envelopes.py) reads the committed
bytes, not this script's output, so a later change to how goldsmith writes or
reads envelopes cannot quietly change what they are. This script only records
how they were made; rerunning it gives the same bytes (Ed25519 is
deterministic and nothing here reads the clock).

The signing key is a THROWAWAY test key derived from a published seed below:
anyone can sign with it, which is the point. Its public half is golden.pub;
no real key is involved. verdicts.json says what ``goldsmith verify`` must
answer for each envelope, given disk.qcow2 (a 64 KiB qcow2 with 512-byte
clusters from ``qemu-img create``) and golden.pub as the only trusted key.
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from validate.dsse import PAYLOAD_TYPE_IN_TOTO, sign_envelope
from validate.keys import PrivateKey

HERE = Path(__file__).resolve().parent
IMAGE = HERE / "disk.qcow2"
# Published seeds: these keys protect nothing.
GOLDEN_KEY = PrivateKey(
    ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"goldsmith golden envelopes: throwaway test key").digest()
    )
)
STRANGER_KEY = PrivateKey(
    ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"goldsmith golden envelopes: a key nobody trusts").digest()
    )
)
APPROVED = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
# The test verifies at this moment, between approval and expiry.
VERIFY_AT = "2026-06-01T00:00:00Z"


def statement(version: str = "1.2.0", **changes: Any) -> dict[str, Any]:
    """A goldsmith in-toto statement about IMAGE, in the data formats' shape."""
    data = IMAGE.read_bytes()
    controls = [
        {
            "id": "SSH-01",
            "title": "Root login disabled",
            "area": "ssh",
            "status": "passed",
            "expected": "no",
            "observed": "no",
            "severity": "high",
            "reason": "",
            "references": [],
            "duration": 0.0,
        },
        {
            "id": "SYSCTL-01",
            "title": "kptr_restrict",
            "area": "sysctl",
            "status": "passed",
            "expected": "2",
            "observed": "2",
            "severity": "medium",
            "reason": "",
            "references": [],
            "duration": 0.0,
        },
    ]
    doc: dict[str, Any] = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {
                "name": f"debian-12-baseline-{version}.qcow2",
                "digest": {
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "sha512": hashlib.sha512(data).hexdigest(),
                },
            }
        ],
        "predicateType": "https://goldsmith.dev/template/v1",
        "predicate": {
            "template": {
                "name": "debian-12-baseline",
                "version": version,
                "format": "qcow2",
                "virtualSize": 65536,
            },
            "base": [],
            "profile": {"id": "baseline", "version": "1", "digest": "sha256:" + "22" * 32},
            "results": {
                "approved": True,
                "counts": {"passed": 2, "failed": 0, "error": 0, "waived": 0, "skipped": 0},
                "controls": controls,
            },
            "waivers": [],
            "sbom": {"format": "goldsmith-dpkg/v1", "packages": []},
            "approval": {
                "time": "2026-01-01T00:00:00Z",
                "keyid": GOLDEN_KEY.keyid,
                "validUntil": "2035-12-30T00:00:00Z",
            },
        },
    }
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = doc
        for part in path:
            target = target[part]
        target[last] = value
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def envelope(payload: bytes, *keys: PrivateKey, payload_type: str = PAYLOAD_TYPE_IN_TOTO) -> str:
    """An envelope's JSON text; signed by GOLDEN_KEY unless other keys are given."""
    signed = sign_envelope(payload_type, payload, list(keys) or [GOLDEN_KEY])
    return json.dumps(signed.to_dict(), indent=2) + "\n"


def with_extra(text: str, extra: str) -> str:
    """``text`` (a JSON object) with raw JSON members appended: how duplicate keys,
    which no JSON library writes, are made."""
    return text.rstrip().removesuffix("}").rstrip() + ",\n  " + extra + "\n}\n"


def edited(text: str, edit: Any) -> str:
    doc = json.loads(text)
    edit(doc)
    return json.dumps(doc, indent=2) + "\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def make() -> dict[str, tuple[str, dict[str, Any]]]:
    """file name -> (envelope text, expected verdict)."""
    good = envelope(encode(statement()))
    good_doc = json.loads(good)
    evil_statement = statement(predicate__results__approved=False)
    failing = copy.deepcopy(statement())
    failing["predicate"]["results"]["controls"][0]["status"] = "failed"
    failing["predicate"]["results"]["counts"].update(passed=1, failed=1)
    failing["predicate"]["results"]["approved"] = False

    def trusted() -> dict[str, Any]:
        return {"trusted": True}

    def refused(reason: str, **pins: str) -> dict[str, Any]:
        verdict: dict[str, Any] = {"trusted": False, "reason": reason}
        if pins:
            verdict["pins"] = pins
        return verdict

    cases: dict[str, tuple[str, dict[str, Any]]] = {}
    cases["good.dsse.json"] = (good, trusted())
    cases["good-pinned.dsse.json"] = (
        good,
        {
            "trusted": True,
            "pins": {
                "name": "debian-12-baseline",
                "min_version": "1.2",
                "profile": "baseline",
                "profile_digest": "sha256:" + "22" * 32,
            },
        },
    )
    cases["good-url-safe-unpadded.dsse.json"] = (
        edited(
            good,
            lambda d: d.update(
                payload=base64.urlsafe_b64encode(base64.b64decode(d["payload"]))
                .decode()
                .rstrip("=")
            ),
        ),
        trusted(),
    )

    # Duplicate keys in the envelope: the signature is good for one of the two.
    cases["dup-payload-key.dsse.json"] = (
        with_extra(good, f'"payload": "{b64(encode(evil_statement))}"'),
        refused(r"duplicate key 'payload'"),
    )
    cases["dup-payload-key-evil-first.dsse.json"] = (
        '{\n  "payload": "' + b64(encode(evil_statement)) + '",\n' + good.lstrip()[1:],
        refused(r"duplicate key 'payload'"),
    )
    cases["dup-signatures-key.dsse.json"] = (
        with_extra(good, '"signatures": []'),
        refused(r"duplicate key 'signatures'"),
    )
    cases["dup-payloadtype-key.dsse.json"] = (
        with_extra(good, '"payloadType": "application/json"'),
        refused(r"duplicate key 'payloadType'"),
    )
    cases["dup-sig-key-in-signature.dsse.json"] = (
        good.replace('"sig": ', '"sig": "AAAA", "sig": ', 1),
        refused(r"duplicate key 'sig'"),
    )
    # Signatures.
    cases["dup-keyid.dsse.json"] = (
        edited(good, lambda d: d.update(signatures=d["signatures"] * 2)),
        refused(r"duplicate keyid"),
    )
    cases["zero-signatures.dsse.json"] = (
        edited(good, lambda d: d.update(signatures=[])),
        refused(r"signatures: expected a non-empty list"),
    )
    cases["unknown-key.dsse.json"] = (
        envelope(encode(statement()), STRANGER_KEY),
        refused(r"not signed by any trusted key \(signed by " + STRANGER_KEY.keyid),
    )
    cases["lying-keyid.dsse.json"] = (
        edited(
            envelope(encode(statement()), STRANGER_KEY),
            lambda d: d["signatures"][0].update(keyid=GOLDEN_KEY.keyid),
        ),
        refused(r"signature by trusted key .* does not verify"),
    )
    cases["seventeen-signatures.dsse.json"] = (
        edited(
            good,
            lambda d: d.update(
                signatures=[{"keyid": f"{i:064x}", "sig": b64(bytes(64))} for i in range(17)]
            ),
        ),
        refused(r"17 signatures; at most 16"),
    )
    cases["tampered-payload.dsse.json"] = (
        edited(good, lambda d: d.update(payload=b64(encode(evil_statement)))),
        refused(r"does not verify; the envelope was altered"),
    )
    cases["payload-type-wrong.dsse.json"] = (
        envelope(encode(statement()), payload_type="application/json"),
        refused(r"payloadType is 'application/json'"),
    )
    cases["lone-surrogate-keyid.dsse.json"] = (
        good.replace(f'"keyid": "{GOLDEN_KEY.keyid}"', '"keyid": "\\ud800"'),
        refused(r"lone surrogate"),
    )
    cases["non-canonical-base64-sig.dsse.json"] = (
        edited(
            good, lambda d: d["signatures"][0].update(sig=_noncanonical(d["signatures"][0]["sig"]))
        ),
        refused(r"signatures\[0\].sig: expected canonical base64"),
    )
    cases["base64-with-newlines.dsse.json"] = (
        edited(
            good,
            lambda d: d.update(
                payload="\n".join(d["payload"][i : i + 76] for i in range(0, len(d["payload"]), 76))
            ),
        ),
        refused(r"payload: expected canonical base64"),
    )
    cases["extra-envelope-field.dsse.json"] = (
        with_extra(good, '"comment": "unsigned"'),
        refused(r"unknown envelope field"),
    )
    # Hostile JSON in the envelope itself.
    cases["deep-nesting.dsse.json"] = (
        with_extra(good, '"x": ' + "[" * 1000 + "]" * 1000),
        refused(r"nested deeper than"),
    )
    cases["huge-int.dsse.json"] = (
        with_extra(good, '"x": 1' + "0" * 5000),
        refused(r"an integer of more than"),
    )
    # Signed statements that are ambiguous or hostile: a good signature over a
    # bad document (a careless signer, or a compromised one) is still refused.
    dup_control = copy.deepcopy(failing)
    dup_control["predicate"]["results"]["controls"].append(
        {**statement()["predicate"]["results"]["controls"][0]}
    )
    cases["statement-dup-control.dsse.json"] = (
        envelope(encode(dup_control)),
        refused(r"duplicate control id 'SSH-01'"),
    )
    approved_twice = encode(failing).replace(
        b'"approved":false', b'"approved":false,"approved":true'
    )
    cases["statement-dup-key.dsse.json"] = (
        envelope(approved_twice),
        refused(r"duplicate key 'approved'"),
    )
    cases["statement-deep-nesting.dsse.json"] = (
        envelope(encode(statement(predicate__sbom=json.loads("[" * 70 + "]" * 70)))),
        refused(r"nested deeper than"),
    )
    cases["statement-huge-int.dsse.json"] = (
        envelope(
            encode(statement()).replace(b'"virtualSize":65536', b'"virtualSize":1' + b"0" * 5000)
        ),
        refused(r"an integer of more than"),
    )
    cases["statement-lone-surrogate.dsse.json"] = (
        envelope(encode(statement()).replace(b'"id":"baseline"', b'"id":"\\udc00"')),
        refused(r"lone surrogate"),
    )
    cases["statement-unapproved.dsse.json"] = (
        envelope(encode(failing)),
        refused(r"results are not approved"),
    )
    cases["statement-counts-disagree.dsse.json"] = (
        envelope(
            encode(
                statement(
                    predicate__results__counts={
                        "passed": 9,
                        "failed": 0,
                        "error": 0,
                        "waived": 0,
                        "skipped": 0,
                    }
                )
            )
        ),
        refused(r"counts disagree with the listed controls"),
    )
    cases["statement-predicate-type.dsse.json"] = (
        envelope(encode(statement(predicateType="https://slsa.dev/provenance/v1"))),
        refused(r"predicateType is 'https://slsa.dev/provenance/v1'"),
    )
    other_digest = statement()
    other_digest["subject"][0]["digest"]["sha256"] = "00" * 32
    cases["statement-other-image.dsse.json"] = (
        envelope(encode(other_digest)),
        refused(r"sha256 [0-9a-f]{64} does not match the manifest subject"),
    )
    cases["statement-expired.dsse.json"] = (
        envelope(
            encode(
                statement(
                    predicate__approval={
                        "time": "2025-01-01T00:00:00Z",
                        "keyid": GOLDEN_KEY.keyid,
                        "validUntil": "2025-02-01T00:00:00Z",
                    }
                )
            )
        ),
        refused(r"expired at 2025-02-01T00:00:00Z"),
    )
    # Terminal escapes: signed names that would paint a fake verdict line.
    painted = statement()
    painted["predicate"]["template"]["name"] = "x\r\x1b[2K\x1b[32mTRUSTED: debian-12-baseline"
    cases["statement-escapes-in-name.dsse.json"] = (
        envelope(encode(painted)),
        refused(r"the template is 'x\\r\\x1b\[2K", name="debian-12-baseline"),
    )
    # Rollback: an older release, validly signed, where a newer one is expected.
    cases["rollback-older-release.dsse.json"] = (
        envelope(encode(statement(version="1.1.9"))),
        refused(r"version '1.1.9' is lower than '1.2.0'", min_version="1.2.0"),
    )
    cases["other-template.dsse.json"] = (
        envelope(encode(statement(predicate__template__name="debian-12-web"))),
        refused(r"the template is 'debian-12-web'; --name requires", name="debian-12-baseline"),
    )
    del good_doc
    return cases


def _noncanonical(text: str) -> str:
    """The same bytes with a padding bit set ('Q==' and 'R==' decode alike in lax
    decoders); ``text`` must end in padding."""
    body = text.rstrip("=")
    assert body != text, "no padding bits to set"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(body[-1])
    return body[:-1] + alphabet[last | 1] + "=" * (len(text) - len(body))


def main() -> None:
    verdicts = {}
    for name, (text, verdict) in make().items():
        (HERE / name).write_text(text, encoding="utf-8")
        verdicts[name] = verdict
    (HERE / "golden.pub").write_bytes(GOLDEN_KEY.public.to_pem())
    (HERE / "verdicts.json").write_text(json.dumps(verdicts, indent=2) + "\n")


if __name__ == "__main__":
    main()
