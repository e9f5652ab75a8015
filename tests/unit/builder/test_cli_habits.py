"""The CLI habits people expect: --debug/--quiet after the subcommand too,
one --json shape whatever the number of specs, profile list."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from builder.cli import cli

ROOT = Path(__file__).resolve().parents[3]


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path: Path) -> None:
    before = CliRunner().invoke(cli, ["--debug", "validate", str(tmp_path / "none")])
    after = CliRunner().invoke(cli, ["validate", str(tmp_path / "none"), "--debug"])
    plain = CliRunner().invoke(cli, ["validate", str(tmp_path / "none")])
    # With --debug the error propagates (a traceback); without, one line and exit 2.
    assert before.exception is not None and after.exception is not None
    assert type(before.exception) is type(after.exception)
    assert plain.exit_code == 2 and "Traceback" not in plain.output


def test_quiet_after_the_subcommand_silences_progress() -> None:
    spec = str(ROOT / "templates/debian-12-baseline.yaml")
    runner = CliRunner()
    loud = runner.invoke(cli, ["lint", spec])
    quiet = runner.invoke(cli, ["lint", spec, "--quiet"])
    assert loud.exit_code == quiet.exit_code == 0
    assert "build key:" in quiet.output


def test_nested_groups_accept_them_too() -> None:
    result = CliRunner().invoke(cli, ["profile", "list", "--debug"])
    assert result.exit_code == 0, result.output


def test_profile_list_names_every_shipped_profile() -> None:
    result = CliRunner().invoke(cli, ["profile", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["id"] for r in rows} >= {"baseline", "cis-level1-server", "cis-level2-server"}
    assert all(r["controls"] > 0 and r["digest"].startswith("sha256:") for r in rows)
    text = CliRunner().invoke(cli, ["profile", "list"]).output
    assert "cis-level1-server" in text and "controls" in text


def test_build_json_is_a_list_of_one_entry_even_when_it_fails(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\n")
    result = CliRunner().invoke(cli, ["build", str(spec), "--json"])
    assert result.exit_code == 2
    entries = json.loads(result.stdout)
    assert entries == [{"spec": str(spec), "exit_code": 2, "result": None}]
