"""goldsmith controls / goldsmith profile: output on stdout, bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from builder.cli import cli


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_list_and_show() -> None:
    code, out = run("controls", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) >= 120
    code, out = run("controls", "list", "--profile", "baseline")
    assert code == 0 and "ssh-root-login" in out
    code, out = run("controls", "show", "ssh-root-login")
    assert code == 0
    assert "CIS Debian 12 v1.1.0 5.1.20 (L1)" in json.loads(out)["references"]


def test_profile_show_resolves() -> None:
    code, out = run("profile", "show", "cis-level1-server")
    assert code == 0
    document = json.loads(out)
    assert document["digest"].startswith("sha256:")
    waived = [c for c in document["controls"] if c["waiver"]]
    assert {c["id"] for c in waived} >= {"fs-var", "fs-var-log", "fs-home"}


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    code, out = run("controls", "show", "ssh-root-logn")
    assert code == 2
    assert "did you mean 'ssh-root-login'?" in out
    bad = tmp_path / "p.yaml"
    bad.write_text("id: p\nversion: '1'\nextend: baseline\n")
    code, out = run("profile", "show", str(bad))
    assert code == 2
    assert f"{bad}: extend: unknown key" in out
    assert "Traceback" not in out
