"""goldsmith lint: a spec checked as a build would check it, nothing booted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from builder.build import plan_build
from builder.cli import cli
from builder.spec import load_spec

ROOT = Path(__file__).resolve().parents[3]


def test_lint_prints_the_plan_and_the_build_key_a_build_would_use() -> None:
    spec = ROOT / "templates/debian-12-baseline.yaml"
    result = CliRunner().invoke(cli, ["lint", str(spec)])
    assert result.exit_code == 0, result.output
    _, _, key = plan_build(load_spec(spec))
    assert f"build key: {key}" in result.output
    assert (
        "would run: base -> boot -> cloud-init -> upgrade -> harden -> seal -> shutdown"
        " -> compact -> scrub -> digest\n" in result.output
    )


def test_lint_lists_each_conversion_a_build_would_make(tmp_path: Path) -> None:
    spec = tmp_path / "multi.yaml"
    text = (ROOT / "templates/debian-12-baseline.yaml").read_text()
    spec.write_text(text + "outputs: [qcow2, vhdx, raw]\n")
    result = CliRunner().invoke(cli, ["lint", str(spec), "--json"])
    assert result.exit_code == 0, result.output
    stages = json.loads(result.output)[0]["stages"]
    assert stages[-4:] == ["scrub", "digest", "convert-raw", "convert-vhdx"]


def test_lint_json_is_one_list_whatever_the_number_of_specs() -> None:
    specs = [
        ROOT / "templates/debian-12-baseline.yaml",
        ROOT / "templates/debian-12-cis-level1.yaml",
    ]
    one = json.loads(CliRunner().invoke(cli, ["lint", str(specs[0]), "--json"]).output)
    two = json.loads(CliRunner().invoke(cli, ["lint", *map(str, specs), "--json"]).output)
    assert isinstance(one, list) and len(one) == 1 and len(two) == 2
    assert two[1]["profile"]["id"] == "cis-level1-server"


def test_lint_names_steps_and_secrets_by_name_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "examples/webserver", tmp_path / "web")
    (tmp_path / "web/keys").mkdir()
    (tmp_path / "web/keys/example-tools.asc").write_text(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQ==\n-----END PGP PUBLIC KEY BLOCK-----\n"
    )
    monkeypatch.setenv("EXAMPLE_REGISTRATION_TOKEN", "value-never-shown")
    result = CliRunner().invoke(cli, ["lint", str(tmp_path / "web/webserver.yaml")])
    assert result.exit_code == 0, result.output
    assert "provision[6] ansible (service account and nginx drop-in)" in result.output
    assert "host secrets by name: EXAMPLE_REGISTRATION_TOKEN" in result.output
    assert "value-never-shown" not in result.output


def test_lint_refuses_a_missing_secret_and_a_missing_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "examples/webserver", tmp_path / "web")
    spec = tmp_path / "web/webserver.yaml"
    monkeypatch.delenv("EXAMPLE_REGISTRATION_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["lint", str(spec)])
    assert result.exit_code == 2
    assert "provision[4].apt.key" in result.output and "does not exist" in result.output
    (tmp_path / "web/keys").mkdir()
    (tmp_path / "web/keys/example-tools.asc").write_bytes(b"\x99\x00")
    result = CliRunner().invoke(cli, ["lint", str(spec)])
    assert result.exit_code == 2
    assert "EXAMPLE_REGISTRATION_TOKEN is not set" in result.output
