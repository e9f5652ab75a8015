"""The attestations beside a manifest: a CycloneDX 1.6 SBOM and SLSA Provenance v1,
each its own signed in-toto statement about the image, read by the ecosystem's own
libraries here (cyclonedx-python-lib's schema validator and deserialiser, the
in-toto attestation protobuf models)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.model.bom import Bom
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from google.protobuf import json_format  # type: ignore[import-untyped]
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2  # type: ignore[import-untyped]
from in_toto_attestation.v1 import statement_pb2  # type: ignore[import-untyped]
from in_toto_attestation.v1.statement import Statement  # type: ignore[import-untyped]
from test_manifest import NOW, make_artifact, make_key

from validate import provenance
from validate.approvals import SignMode
from validate.claims import VerificationError
from validate.dsse import PAYLOAD_TYPE_IN_TOTO, sign_envelope
from validate.keys import KeyType, load_private_key
from validate.manifest import encode_statement, sign_artifact
from validate.results import Package, ValidationRun
from validate.verify import verify_artifact

PACKAGES = (
    Package("base-files", "12.4+deb12u5", "amd64", "base-files", "12.4+deb12u5"),
    Package("libc6", "2.36-9+deb12u4", "amd64", "glibc", "2.36-9+deb12u4"),
    Package("openssh-server", "1:9.2p1-2+deb12u3", "amd64", "openssh", "1:9.2p1-2+deb12u3"),
    Package("zlib1g", "1:1.2.13.dfsg-1", "amd64", "zlib", "1:1.2.13.dfsg-1"),
)


def set_packages(artifact: Path, packages: tuple[Package, ...] = PACKAGES) -> None:
    run = ValidationRun.load(artifact / "validation.json")
    ValidationRun(**{**run.__dict__, "packages": packages}).write(artifact / "validation.json")


def payload_of(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(base64.b64decode(json.loads(path.read_bytes())["payload"]))
    return doc


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path]:
    artifact = make_artifact(tmp_path)
    set_packages(artifact)
    key = make_key(tmp_path)
    sign_artifact(artifact, key, now=NOW)
    return artifact, key


def test_the_sbom_is_valid_cyclonedx_and_its_library_reads_the_packages(
    signed: tuple[Path, Path],
) -> None:
    artifact, _ = signed
    text = (artifact / "sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = Bom.from_json(json.loads(text))  # type: ignore[attr-defined]
    purls = sorted(str(c.purl) for c in bom.components)
    assert purls == [
        "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12",
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12",
        "pkg:deb/debian/openssh-server@1:9.2p1-2%2Bdeb12u3?arch=amd64&distro=debian-12",
        "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12",
    ]
    libc = next(c for c in bom.components if c.name == "libc6")
    assert [str(a.purl) for a in libc.pedigree.ancestors] == [
        "pkg:deb/debian/glibc@2.36-9%2Bdeb12u4?arch=source&distro=debian-12"
    ]
    assert {p.name: p.value for p in libc.properties}["goldsmith:deb:source"] == "glibc"
    image = bom.metadata.component
    sha256 = hashlib.sha256((artifact / "disk.qcow2").read_bytes()).hexdigest()
    assert (image.name, image.type.value) == ("debian-12-baseline", "operating-system")
    assert sha256 in {h.content for h in image.hashes}


def test_each_attestation_is_a_statement_about_the_image_the_manifest_names(
    signed: tuple[Path, Path],
) -> None:
    artifact, _ = signed
    manifest = payload_of(artifact / "manifest.dsse.json")
    refs = {a["name"]: a for a in manifest["predicate"]["attestations"]}
    for name, kind in (
        ("sbom.dsse.json", "https://cyclonedx.org/bom"),
        ("provenance.dsse.json", "https://slsa.dev/provenance/v1"),
    ):
        envelope = json.loads((artifact / name).read_bytes())
        assert envelope["payloadType"] == PAYLOAD_TYPE_IN_TOTO
        payload = base64.b64decode(envelope["payload"])
        assert refs[name]["payloadDigest"]["sha256"] == hashlib.sha256(payload).hexdigest()
        statement = json.loads(payload)
        assert statement["predicateType"] == refs[name]["predicateType"] == kind
        assert statement["subject"] == manifest["subject"]
        # The in-toto attestation library's own model accepts the statement.
        model = json_format.ParseDict(statement, statement_pb2.Statement())
        Statement.copy_from_pb(model).validate()
    sbom = payload_of(artifact / "sbom.dsse.json")["predicate"]
    assert sbom == json.loads((artifact / "sbom.cdx.json").read_text())


def git(folder: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(folder)]
    return subprocess.run([*command, *args], check=True, capture_output=True, text=True).stdout


def test_provenance_is_slsa_v1_with_the_spec_commit_and_every_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / "templates" / "files").mkdir(parents=True)
    spec = repo / "templates" / "web.yaml"
    spec.write_text("name: web\n")
    (repo / "templates" / "profile.yaml").write_text("id: web\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "spec")
    commit = git(repo, "rev-parse", "HEAD").strip()

    artifact = make_artifact(tmp_path)
    record = json.loads((artifact / "build.json").read_text())
    record["spec"] = {"path": str(spec), "sha256": hashlib.sha256(spec.read_bytes()).hexdigest()}
    record["profile"]["source"] = str(repo / "templates" / "profile.yaml")
    record["provision"] = [
        {
            "index": 0,
            "kind": "file",
            "name": "site",
            "inputs": [{"path": "files/site.conf", "sha256": "ab" * 32}],
            "env_from_host": ["TOKEN"],
            "seconds": 1.0,
        }
    ]
    (artifact / "build.json").write_text(json.dumps(record))
    set_packages(artifact)
    for name in ("GITLAB_CI", "CI_SERVER_URL", "CI_PROJECT_PATH", "CI_PIPELINE_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/templates")
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    monkeypatch.setenv(
        "GITHUB_WORKFLOW_REF", "acme/templates/.github/workflows/r.yml@refs/heads/main"
    )
    sign_artifact(artifact, make_key(tmp_path), now=NOW)

    statement = payload_of(artifact / "provenance.dsse.json")
    predicate = statement["predicate"]
    # The SLSA v1 protobuf model refuses unknown fields: the predicate is its shape.
    json_format.ParseDict(predicate, provenance_pb2.Provenance(), ignore_unknown_fields=False)
    definition = predicate["buildDefinition"]
    assert definition["buildType"] == provenance.BUILD_TYPE
    assert definition["externalParameters"]["spec"] == {
        "path": "templates/web.yaml",
        "digest": {"sha256": record["spec"]["sha256"]},
    }
    deps = {d["name"]: d for d in definition["resolvedDependencies"]}
    assert deps["spec repository"]["digest"] == {"gitCommit": commit}
    assert deps["spec repository"]["uri"] == "git+https://github.com/acme/templates"
    assert deps["base:debian-bookworm-debootstrap"]["digest"] == {"sha256": "33" * 32}
    assert deps["profile:baseline"] == {
        "name": "profile:baseline",
        "uri": "templates/profile.yaml",
        "digest": {"sha256": "22" * 32},
    }
    assert deps["files/site.conf"]["digest"] == {"sha256": "ab" * 32}
    details = predicate["runDetails"]
    assert details["builder"]["id"] == "https://goldsmith.dev/builder"
    assert details["metadata"] == {
        "invocationId": "https://github.com/acme/templates/actions/runs/4242",
        "startedOn": "2026-11-27T08:00:00Z",
        "finishedOn": "2026-11-27T08:20:00Z",
    }
    ci = details["builder"]["builderDependencies"][0]
    assert ci["uri"] == "https://github.com/acme/templates/.github/workflows/r.yml@refs/heads/main"
    # The template statement names the spec and profile the same way.
    inputs = payload_of(artifact / "manifest.dsse.json")["predicate"]["inputs"]
    assert inputs["spec"]["uri"] == "templates/web.yaml"
    assert inputs["profile"]["uri"] == "templates/profile.yaml"
    # No host path anywhere in anything signed.
    for name in ("manifest.dsse.json", "sbom.dsse.json", "provenance.dsse.json"):
        envelope = json.loads((artifact / name).read_bytes())
        assert str(tmp_path) not in base64.b64decode(envelope["payload"]).decode(), name
    assert str(tmp_path) not in (artifact / "sbom.cdx.json").read_text()


def test_gitlab_ci_identity() -> None:
    env = {
        "CI_SERVER_URL": "https://gitlab.example.org",
        "CI_PROJECT_PATH": "ops/templates",
        "CI_PIPELINE_ID": "77",
        "CI_JOB_ID": "901",
    }
    assert provenance.ci_identity(env) == {
        "platform": "gitlab-ci",
        "repository": "https://gitlab.example.org/ops/templates",
        "pipelineId": "77",
        "jobId": "901",
        "invocationId": "https://gitlab.example.org/ops/templates/-/jobs/901",
    }
    assert provenance.ci_identity({}) is None
    # A value with a newline or a space is not copied into a signed document.
    assert provenance.ci_identity({**env, "CI_PROJECT_PATH": "a b"}) is None


def test_portable_names() -> None:
    assert provenance.portable_uri("file:///home/alice/images/base.qcow2") == "base.qcow2"
    assert provenance.portable_uri("http://deb.debian.org/debian") == "http://deb.debian.org/debian"


# --- verify -----------------------------------------------------------------------


def pub(key: Path) -> Path:
    return key.with_name(key.name + ".pub")


def test_verify_checks_the_attestations(signed: tuple[Path, Path]) -> None:
    artifact, key = signed
    verdict = verify_artifact(artifact, keys=[pub(key)])
    assert [(a.name, a.present, a.signers) for a in verdict.attestations] == [
        ("sbom.dsse.json", True, 1),
        ("provenance.dsse.json", True, 1),
    ]
    assert "attested:  sbom.dsse.json verified (1 key(s))" in verdict.describe()


def test_an_absent_attestation_is_reported_not_refused(signed: tuple[Path, Path]) -> None:
    artifact, key = signed
    (artifact / "provenance.dsse.json").unlink()
    verdict = verify_artifact(artifact, keys=[pub(key)])
    assert "provenance.dsse.json absent" in verdict.describe()


def resign_attestation(artifact: Path, key: Path, name: str, edit: Any) -> None:
    statement = payload_of(artifact / name)
    edit(statement)
    envelope = sign_envelope(
        PAYLOAD_TYPE_IN_TOTO, encode_statement(statement), [load_private_key(key)]
    )
    (artifact / name).write_bytes(envelope.to_json())


@pytest.mark.parametrize(
    ("name", "edit", "reason"),
    [
        (
            "sbom.dsse.json",
            lambda s: s["subject"][0]["digest"].update(sha256="00" * 32),
            r"not the one the manifest names",
        ),
        (
            "provenance.dsse.json",
            lambda s: s["predicate"]["runDetails"]["metadata"].update(startedOn="2020-01-01"),
            r"not the one the manifest names",
        ),
    ],
)
def test_an_attestation_signed_anew_by_a_trusted_key_but_not_named_is_refused(
    signed: tuple[Path, Path], name: str, edit: Any, reason: str
) -> None:
    artifact, key = signed
    resign_attestation(artifact, key, name, edit)
    with pytest.raises(VerificationError, match=reason):
        verify_artifact(artifact, keys=[pub(key)])


def test_an_attestation_about_another_image_is_refused(signed: tuple[Path, Path]) -> None:
    """Named by no manifest (an older one's statement, say) and about another image."""
    artifact, key = signed
    statement = payload_of(artifact / "manifest.dsse.json")
    statement["predicate"]["attestations"] = []
    envelope = sign_envelope(
        PAYLOAD_TYPE_IN_TOTO, encode_statement(statement), [load_private_key(key)]
    )
    (artifact / "manifest.dsse.json").write_bytes(envelope.to_json())
    resign_attestation(
        artifact, key, "sbom.dsse.json", lambda s: s["subject"][0].update(name="other")
    )
    with pytest.raises(VerificationError, match=r"another image"):
        verify_artifact(artifact, keys=[pub(key)])


def test_an_altered_sbom_file_is_refused(signed: tuple[Path, Path]) -> None:
    artifact, key = signed
    path = artifact / "sbom.cdx.json"
    path.write_text(path.read_text().replace("openssh", "opensssh"))
    with pytest.raises(VerificationError, match=r"sbom.cdx.json: its sha256"):
        verify_artifact(artifact, keys=[pub(key)])


def test_attestations_count_signers_like_the_manifest(
    signed: tuple[Path, Path], tmp_path: Path
) -> None:
    artifact, alice = signed
    bob = make_key(tmp_path, KeyType.p256, "bob")
    sign_artifact(artifact, bob, now=NOW, mode=SignMode.add)
    verdict = verify_artifact(artifact, keys=[pub(alice), pub(bob)], threshold=2)
    assert [a.signers for a in verdict.attestations] == [2, 2]
    # An attestation only one of them signed does not meet a threshold of two.
    envelope = json.loads((artifact / "sbom.dsse.json").read_bytes())
    envelope["signatures"] = envelope["signatures"][:1]
    (artifact / "sbom.dsse.json").write_text(json.dumps(envelope))
    with pytest.raises(VerificationError, match=r"sbom.dsse.json: 1 distinct trusted key"):
        verify_artifact(artifact, keys=[pub(alice), pub(bob)], threshold=2)


def test_a_cosigner_refuses_an_sbom_that_is_not_the_named_one(
    signed: tuple[Path, Path], tmp_path: Path
) -> None:
    from validate.manifest import SigningError

    artifact, _ = signed
    path = artifact / "sbom.cdx.json"
    path.write_text(path.read_text() + " ")
    with pytest.raises(SigningError, match=r"not the SBOM"):
        sign_artifact(artifact, make_key(tmp_path, name="bob"), now=NOW, mode=SignMode.add)


def test_the_manifest_page_shows_the_sbom_provenance_and_signers(
    signed: tuple[Path, Path],
) -> None:
    from validate.manifest_report import render_manifest_report

    artifact, key = signed
    page = render_manifest_report(artifact / "manifest.dsse.json")
    assert "CycloneDX 1.6" in page and "with source package" in page
    assert "not built in CI" in page
    assert page.count(load_private_key(key).keyid) >= 3  # manifest, SBOM, provenance
    (artifact / "provenance.dsse.json").write_text("{}")
    assert "not the one named" in render_manifest_report(artifact / "manifest.dsse.json")


def test_every_result_row_shows_its_references() -> None:
    from hardening.results import CheckResult, Status

    row = CheckResult(
        "SSH-01",
        "Root login",
        "ssh",
        Status.passed,
        "no",
        "no",
        references=("CIS Debian 12 v1.1.0 5.1.20", "dev-sec ssh-07"),
    )
    from validate.report import _environment

    macros = _environment().get_template("macros.html.j2").module
    html = str(macros.results_table([row]))  # type: ignore[attr-defined]
    assert "CIS Debian 12 v1.1.0 5.1.20 · dev-sec ssh-07" in html
