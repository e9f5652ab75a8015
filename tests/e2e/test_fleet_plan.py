"""Issue: a fleet through the CI engine. plan over real released templates,
as a pipeline runs it: the records (build.json and the signed manifest) of the
released baseline and of a released webserver in a folder of their own, the
baseline's spec unchanged and the webserver's with one byte of one
provisioning input changed. The webserver is planned, with that input named,
in the GitHub matrix, the GitLab child pipeline and the JSON alike.

The package check reads the live Debian mirror: a security update published
since the session's build makes the baseline outdated too, for that reason
only; the tests accept exactly that and nothing else."""

from __future__ import annotations

import json
import shutil
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import REPO, goldsmith

pytestmark = pytest.mark.vm

BASELINE = "debian-12-baseline"
WEBSERVER = "example-webserver"
RECORDS = ("build.json", "manifest.dsse.json")
MIRROR_KINDS = {"security", "packages"}


@pytest.fixture(scope="module")
def records(
    tmp_path_factory: pytest.TempPathFactory,
    baseline_release: dict[str, Any],
    webserver_release: dict[str, Any],
) -> Path:
    """The two releases' records only, as a pipeline downloads them."""
    folder = tmp_path_factory.mktemp("records")
    for artifact in (Path(baseline_release["artifact"]), Path(webserver_release["artifact"])):
        (folder / artifact.name).mkdir()
        for name in RECORDS:
            shutil.copy2(artifact / name, folder / artifact.name / name)
    return folder


@pytest.fixture(scope="module")
def changed_webserver(tmp_path_factory: pytest.TempPathFactory, webserver_spec: Path) -> Path:
    """The webserver spec's folder, copied, with one byte of the site configuration changed."""
    folder = tmp_path_factory.mktemp("webserver-changed") / "webserver-src"
    shutil.copytree(webserver_spec.parent, folder)
    site = folder / "files/nginx-site.conf"
    original = site.read_text()
    site.write_text(original.replace("index index.html;", "index index.htm;"))
    assert site.read_text() != original
    return folder / webserver_spec.name


def specs(changed_webserver: Path) -> list[Path]:
    return [REPO / "templates/debian-12-baseline.yaml", changed_webserver]


@pytest.fixture(scope="module")
def plan_json(records: Path, changed_webserver: Path) -> dict[str, Any]:
    proc = goldsmith("plan", *specs(changed_webserver), "--manifests", records, "--format", "json")
    assert proc.returncode == 1, proc.stderr[-4000:]
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


@pytest.fixture(scope="module")
def expected(plan_json: dict[str, Any]) -> set[str]:
    """The webserver, and the baseline only if the mirror moved on since its build."""
    planned = {t["name"]: t for t in plan_json["rebuild"]}
    assert WEBSERVER in planned
    if BASELINE in planned:
        kinds = {r["kind"] for r in planned[BASELINE]["reasons"]}
        assert kinds <= MIRROR_KINDS, planned[BASELINE]
        return {WEBSERVER, BASELINE}
    return {WEBSERVER}


def test_json_names_the_changed_input(plan_json: dict[str, Any], expected: set[str]) -> None:
    (webserver,) = [t for t in plan_json["rebuild"] if t["name"] == WEBSERVER]
    provision = [r for r in webserver["reasons"] if r["kind"] == "provision"]
    assert len(provision) == 1, webserver
    assert "files/nginx-site.conf" in provision[0]["message"]
    assert {r["kind"] for r in webserver["reasons"]} <= {"provision"} | MIRROR_KINDS
    assert webserver["version"] == "1.0.0"
    assert Path(webserver["manifest"]).name == "manifest.dsse.json"
    if expected == {WEBSERVER}:
        assert [t["name"] for t in plan_json["current"]] == [BASELINE]


def test_github_matrix_is_exactly_the_outdated_ones(
    records: Path, changed_webserver: Path, expected: set[str]
) -> None:
    proc = goldsmith(
        "plan", *specs(changed_webserver), "--manifests", records, "--format", "github"
    )
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert proc.stdout.count("\n") == 1
    matrix = json.loads(proc.stdout)
    assert list(matrix) == ["include"]
    assert {e["name"] for e in matrix["include"]} == expected
    for entry in matrix["include"]:
        assert set(entry) == {"spec", "name", "reasons"}
        assert Path(entry["spec"]).is_file()
        assert entry["reasons"] and all(isinstance(r, str) for r in entry["reasons"])


def test_gitlab_child_pipeline_is_exactly_the_outdated_ones(
    records: Path, changed_webserver: Path, expected: set[str]
) -> None:
    proc = goldsmith(
        "plan", *specs(changed_webserver), "--manifests", records, "--format", "gitlab"
    )
    assert proc.returncode == 1, proc.stderr[-4000:]
    doc = yaml.safe_load(proc.stdout)
    text = files("check_jsonschema.builtin_schemas.vendor").joinpath("gitlab-ci.json")
    schema = json.loads(text.read_text("utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert [e.message for e in validator.iter_errors(doc)] == []
    matrix = doc["rebuild"]["parallel"]["matrix"]
    assert {m["TEMPLATE"] for m in matrix} == expected
    assert doc["verify"]["needs"] == ["rebuild"]


def test_the_released_specs_have_nothing_of_their_own_to_rebuild(
    records: Path, webserver_spec: Path
) -> None:
    """Both specs as they were released: exit 0 and the empty matrix, unless
    the mirror moved on, which is then the only reason given."""
    released = [REPO / "templates/debian-12-baseline.yaml", webserver_spec]
    proc = goldsmith("plan", *released, "--manifests", records, "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr[-4000:]
    doc = json.loads(proc.stdout)
    kinds = {r["kind"] for t in doc["rebuild"] for r in t["reasons"]}
    assert kinds <= MIRROR_KINDS, doc["rebuild"]
    proc = goldsmith("plan", *released, "--manifests", records, "--format", "github")
    if not doc["rebuild"]:
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert json.loads(proc.stdout) == {"include": []}
