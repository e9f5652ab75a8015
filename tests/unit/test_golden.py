"""The golden records in tests/data/golden, read by today's readers.

build.json and validation.json came from a real build and validation of the
debian-12-baseline template (host paths scrubbed, the image retargeted to a
64 KiB qcow2, the package list cut short); the manifest, SBOM and provenance
were signed over them as ``goldsmith sign`` signs (tests/data/golden/make_golden.py
says how). The tests read the committed bytes: a change to a format, or to how
one is read, fails here, and making it pass is a visible, deliberate diff of
these files (regenerate with ``python -m tests.data.golden.make_golden``). A
manifest signed today must go on verifying. They also match the JSON Schemas
published in validate/schemas, whose ids are the URIs the documents carry.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from builder.lineage import history
from builder.outdated import read_manifest
from hardening.strictdata import load_json_file
from validate.attestations import make_attachments
from validate.keys import load_public_key
from validate.manifest import BUILD_SCHEMA, BuildRecord, build_statement
from validate.manifest_report import read_claims, render_manifest_report
from validate.qcow2 import require_self_contained
from validate.results import SCHEMA as VALIDATION_SCHEMA
from validate.results import ValidationRun
from validate.run import load_build_record
from validate.statement import PREDICATE_TYPE
from validate.verify import verify_artifact

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden"
SCHEMAS = ROOT / "validate" / "schemas"
ARTIFACT = GOLDEN / "debian-12-baseline-1.0.0"
KEY = GOLDEN / "golden.pub"
# Signed at 2026-12-01T09:00:00Z for 180 days: verified in between.
VERIFY_AT = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)
REGENERATE = "a format changed: if on purpose, run python -m tests.data.golden.make_golden"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def payload(name: str) -> bytes:
    envelope = json.loads((ARTIFACT / name).read_bytes())
    return base64.b64decode(envelope["payload"])


def test_validation_record_is_read_and_written_back_byte_for_byte(tmp_path: Path) -> None:
    run = ValidationRun.load(ARTIFACT / "validation.json")
    assert (run.template_name, run.template_version) == ("debian-12-baseline", "1.0.0")
    assert run.approved
    assert run.counts == {"passed": 55, "failed": 0, "error": 0, "waived": 0, "skipped": 3}
    assert len(run.packages) == 11
    assert run.image_sha256 == sha256(ARTIFACT / "disk.qcow2")
    run.write(tmp_path / "validation.json")
    assert (tmp_path / "validation.json").read_bytes() == (
        ARTIFACT / "validation.json"
    ).read_bytes(), REGENERATE


def test_build_record_is_read_by_validate_and_sign() -> None:
    record = load_build_record(ARTIFACT)
    assert record["template"] == {"name": "debian-12-baseline", "version": "1.0.0"}
    path = ARTIFACT / "build.json"
    build = BuildRecord.from_dict(load_json_file(path), path)
    assert build.template_name == "debian-12-baseline"
    assert build.spec_path == "templates/debian-12-baseline.yaml"
    assert build.profile_source == "baseline"
    assert (build.firmware, build.tpm) == ("bios", False)
    assert build.image_sha256 == sha256(ARTIFACT / "disk.qcow2")
    assert build.image_virtual_size == 65536
    assert [b.source for b in build.base] == ["debootstrap"]
    assert build.provision == ()
    assert {"goldsmith", "qemu"} <= build.tools.keys()


def test_manifest_verifies_with_its_attestations() -> None:
    verdict = verify_artifact(ARTIFACT, keys=[KEY], now=VERIFY_AT)
    assert verdict.describe().startswith("TRUSTED: debian-12-baseline 1.0.0")
    assert [s.keyid for s in verdict.signers] == [load_public_key(KEY).keyid]
    assert verdict.claims.profile_id == "baseline"
    assert verdict.claims.approved
    # The SBOM and the provenance beside it were checked too.
    assert len(verdict.attestations) == 2


def test_statement_is_what_sign_writes_today() -> None:
    """The statement, SBOM and provenance made now from the golden records, with
    the golden approval's key and times, are the signed ones byte for byte."""
    signed: dict[str, Any] = json.loads(payload("manifest.dsse.json"))
    approval = signed["predicate"]["approval"]
    build_path, validation_path = ARTIFACT / "build.json", ARTIFACT / "validation.json"
    build = BuildRecord.from_dict(load_json_file(build_path), build_path)
    validation = ValidationRun.load(validation_path)
    image = ARTIFACT / "disk.qcow2"
    approved_at = datetime.datetime.fromisoformat(approval["time"])
    statement = build_statement(
        build,
        validation,
        build_record_sha256=sha256(build_path),
        validation_record_sha256=sha256(validation_path),
        image_sha256=sha256(image),
        image_sha512=hashlib.sha512(image.read_bytes()).hexdigest(),
        virtual_size=require_self_contained(image).virtual_size,
        keyid=load_public_key(KEY).keyid,
        approved_at=approved_at,
        valid_until=datetime.datetime.fromisoformat(approval["validUntil"]),
    )
    attachments = make_attachments(build, validation, statement, approved_at=approved_at)
    attachments.attach(statement)
    assert statement == signed, REGENERATE
    assert attachments.bom == (ARTIFACT / "sbom.cdx.json").read_bytes(), REGENERATE
    for name, made in attachments.payloads.items():
        assert made == payload(name), (name, REGENERATE)


def test_lenient_readers_read_the_manifest() -> None:
    manifest = ARTIFACT / "manifest.dsse.json"
    # goldsmith outdated and history: decoded, not verified.
    facts = read_manifest(manifest)
    assert (facts.name, facts.version) == ("debian-12-baseline", "1.0.0")
    assert facts.build_record_sha256 == sha256(ARTIFACT / "build.json")
    assert facts.image_sha256 == sha256(ARTIFACT / "disk.qcow2")
    assert len(facts.packages) == 11
    assert facts.provision_inputs == {}
    (entry,) = history(GOLDEN)
    assert (entry.name, entry.version, entry.manifest_sha256) == (
        "debian-12-baseline",
        "1.0.0",
        sha256(manifest),
    )
    # goldsmith report: the claims, and the page.
    claims = read_claims(manifest)
    assert claims.approved is True
    assert len(claims.controls) == 58
    assert {a.state for a in claims.attestations} == {"present"}
    assert "debian-12-baseline" in render_manifest_report(manifest)


# --- the published JSON Schemas (validate/schemas), each $id the URI documents carry ----

SCHEMA_FILES = {
    BUILD_SCHEMA: "build-v1.schema.json",
    VALIDATION_SCHEMA: "validation-v1.schema.json",
    PREDICATE_TYPE: "template-statement-v1.schema.json",
}


def validator(uri: str) -> jsonschema.Draft202012Validator:
    schemas = {u: json.loads((SCHEMAS / name).read_text()) for u, name in SCHEMA_FILES.items()}
    # The statement's schema takes results and packages from the validation schema.
    registry: Registry[Any] = Registry().with_resources(
        (u, Resource.from_contents(schema)) for u, schema in schemas.items()
    )
    return jsonschema.Draft202012Validator(schemas[uri], registry=registry)


def test_every_schema_is_a_schema_named_by_the_uri_goldsmith_writes() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(SCHEMA_FILES.values())
    for uri, name in SCHEMA_FILES.items():
        schema = json.loads((SCHEMAS / name).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"] == uri


def golden_documents() -> list[tuple[str, Any]]:
    return [
        (BUILD_SCHEMA, json.loads((ARTIFACT / "build.json").read_bytes())),
        (VALIDATION_SCHEMA, json.loads((ARTIFACT / "validation.json").read_bytes())),
        (PREDICATE_TYPE, json.loads(payload("manifest.dsse.json"))),
    ]


@pytest.mark.parametrize(("uri", "document"), golden_documents(), ids=lambda v: str(v)[:40])
def test_golden_records_match_the_published_schemas(uri: str, document: Any) -> None:
    validator(uri).validate(document)


@pytest.mark.parametrize(
    ("uri", "path", "value"),
    [
        (BUILD_SCHEMA, ("image", "sha256"), "not a digest"),
        (BUILD_SCHEMA, ("schema",), "https://goldsmith.dev/build/v2"),
        (VALIDATION_SCHEMA, ("approved",), "yes"),
        (VALIDATION_SCHEMA, ("results", 0, "status"), "fine"),
        (PREDICATE_TYPE, ("predicate", "approval", "keyid"), "somebody"),
        (PREDICATE_TYPE, ("predicate", "sbom", "packages", 0, "name"), 7),
    ],
)
def test_the_schemas_refuse_what_goldsmith_never_writes(
    uri: str, path: tuple[str | int, ...], value: Any
) -> None:
    document = dict(golden_documents())[uri]
    node = document
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validator(uri).validate(document)
