"""release decides what to rebuild, re-validate and sign; the stages are faked here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import builder.release as release
from builder.build import BuildOutcome, plan_build
from builder.cache import hash_file
from builder.errors import GoldsmithError
from builder.spec import load_spec
from hardening.results import CheckResult, Status
from validate.results import ValidationRun

SPEC = """\
name: demo
version: 1.0.0
base:
  url: {{url: "https://example.invalid/base.qcow2", sha256: "{sha}"}}
profile: baseline
"""


class Stages:
    """Records what release asked of the build, validate and sign stages."""

    def __init__(self, approve: bool = True) -> None:
        self.approve = approve
        self.builds: list[str] = []
        self.validations: list[Path] = []
        self.signed: list[tuple[Path, Path | None]] = []

    def build(self, spec_path: Path, out: Path, *, force: bool, version: str) -> BuildOutcome:
        spec = load_spec(spec_path)
        folder = out / f"{spec.name}-{version}"
        key = plan_build(spec.__class__(**{**spec.__dict__, "version": version}))[2]
        recorded = None
        if (folder / "build.json").is_file():
            recorded = json.loads((folder / "build.json").read_text()).get("build_key")
        if recorded == key and not force:
            return BuildOutcome(folder, key, reused=True)
        self.builds.append(version)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "disk.qcow2").write_bytes(f"image {version} {key}".encode())
        digests = hash_file(folder / "disk.qcow2", "sha256", "sha512")
        record = {
            "schema": "https://goldsmith.dev/build/v1",
            "template": {"name": spec.name, "version": version},
            "spec": {"path": str(spec_path), "sha256": spec.sha256},
            "profile": {"id": "p", "version": "1", "digest": "sha256:" + "0" * 64, "source": "p"},
            "base": {"source": "url", "name": "b", "uri": "u", "digest": {"sha256": "1" * 64}},
            "image": {"path": "disk.qcow2", "virtual_size": 1, **digests},
            "tools": {"goldsmith": "0.1.0", "qemu": "7.2.22"},
            "accelerator": "tcg",
            "build_vm": {"machine_id": "2" * 32, "host_keys": {}},
            "started": f"2026-11-27T08:{len(self.builds):02d}:00Z",
            "finished": f"2026-11-27T08:{len(self.builds):02d}:00Z",
            "build_key": key,
        }
        (folder / "build.json").write_text(json.dumps(record))
        return BuildOutcome(folder, key, reused=False)

    def validate(self, artifact: Path, *, profile_ref: str, tests: Any) -> ValidationRun:
        self.validations.append(artifact)
        digests = hash_file(artifact / "disk.qcow2", "sha256", "sha512")
        profile = plan_build(load_spec(artifact.parent.parent / "spec.yaml"))[0]
        status = Status.passed if self.approve else Status.failed
        run = ValidationRun(
            template_name="demo",
            template_version=artifact.name.split("-", 1)[1],
            image_path="disk.qcow2",
            image_sha256=digests["sha256"],
            image_sha512=digests["sha512"],
            profile_id=profile.id,
            profile_version=profile.version,
            profile_digest=profile.digest,
            started="2026-11-27T08:00:00Z",
            finished="2026-11-27T08:01:00Z",
            accelerator="tcg",
            goldsmith_version="0.1.0",
            timings={},
            results=(CheckResult("X-1", "x", "ssh", status, "a", "a"),),
            packages=(),
        )
        run.write(artifact / "validation.json")
        return run

    def sign(
        self, artifact: Path, key: Path, *, valid_for_days: int, previous: Path | None
    ) -> Path:
        self.signed.append((artifact, previous))
        manifest = artifact / "manifest.dsse.json"
        manifest.write_text("{}")
        return manifest


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch) -> Stages:
    fake = Stages()
    monkeypatch.setattr(release, "build_template", fake.build)
    monkeypatch.setattr(release, "validate_artifact", fake.validate)
    monkeypatch.setattr(release, "sign_artifact", fake.sign)
    # The manifest is faked: history needs only the folders and their build records.
    monkeypatch.setattr("builder.lineage.read_manifest", lambda path: None)
    return fake


def write_spec(root: Path, sha: str = "a" * 64, version: str = "1.0.0") -> Path:
    spec = root / "spec.yaml"
    spec.write_text(SPEC.format(sha=sha).replace("1.0.0", version))
    return spec


def test_first_release_builds_validates_and_signs(tmp_path: Path, stages: Stages) -> None:
    out = tmp_path / "out"
    outcome = release.release_template(write_spec(tmp_path), out, tmp_path / "key")
    assert stages.builds == ["1.0.0"]
    assert outcome.version == "1.0.0" and outcome.built and outcome.validated
    assert stages.signed == [(out / "demo-1.0.0", None)]


def test_unchanged_inputs_reuse_build_and_validation(tmp_path: Path, stages: Stages) -> None:
    spec, out = write_spec(tmp_path), tmp_path / "out"
    release.release_template(spec, out, tmp_path / "key")
    again = release.release_template(spec, out, tmp_path / "key")
    assert stages.builds == ["1.0.0"]
    assert len(stages.validations) == 1
    assert not again.built and not again.validated


def test_changed_inputs_bump_the_patch_and_link_the_previous_manifest(
    tmp_path: Path, stages: Stages
) -> None:
    out = tmp_path / "out"
    release.release_template(write_spec(tmp_path), out, tmp_path / "key")
    bumped = release.release_template(write_spec(tmp_path, sha="b" * 64), out, tmp_path / "key")
    assert bumped.version == "1.0.1"
    assert stages.builds == ["1.0.0", "1.0.1"]
    assert bumped.previous_manifest == out / "demo-1.0.0" / "manifest.dsse.json"
    # Running again with the same changed inputs reuses 1.0.1 instead of bumping again.
    again = release.release_template(write_spec(tmp_path, sha="b" * 64), out, tmp_path / "key")
    assert again.version == "1.0.1" and not again.built
    assert stages.builds == ["1.0.0", "1.0.1"]


def test_a_higher_spec_version_wins_over_the_bump(tmp_path: Path, stages: Stages) -> None:
    out = tmp_path / "out"
    release.release_template(write_spec(tmp_path), out, tmp_path / "key")
    spec = write_spec(tmp_path, sha="b" * 64, version="2.0.0")
    assert release.release_template(spec, out, tmp_path / "key").version == "2.0.0"


def test_failed_validation_is_never_signed(tmp_path: Path, stages: Stages) -> None:
    stages.approve = False
    with pytest.raises(GoldsmithError, match="failed validation; it is not signed"):
        release.release_template(write_spec(tmp_path), tmp_path / "out", tmp_path / "key")
    assert stages.signed == []
