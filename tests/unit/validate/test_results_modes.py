"""validation.json, junit.xml, report.html and the manifest report are written
0644 whatever the umask: they are evidence a web server must be able to serve,
not secrets."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_manifest_report import make_statement, write_envelope
from test_results import results

from builder.cli import GoldsmithGroup
from hardening.results import Status
from validate.manifest_report import COMMANDS
from validate.report import write_html, write_junit
from validate.results import ValidationRun


@pytest.fixture
def umask_077() -> Iterator[None]:
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make_run() -> ValidationRun:
    return ValidationRun(
        template_name="t",
        template_version="1.0.0",
        image_path="disk.qcow2",
        image_sha256="0" * 64,
        image_sha512="0" * 128,
        profile_id="p",
        profile_version="1",
        profile_digest="sha256:" + "0" * 64,
        started="2026-11-27T08:00:00Z",
        finished="2026-11-27T08:01:00Z",
        accelerator="tcg",
        goldsmith_version="0",
        timings={"total": 60.0},
        results=results((Status.passed, Status.waived)),
        packages=(),
    )


def test_validation_records_are_0644_under_umask_077(tmp_path: Path, umask_077: None) -> None:
    run = make_run()
    # validate_artifact (validate/run.py) writes these three, with these calls.
    run.write(tmp_path / "validation.json")
    write_junit(run, tmp_path / "junit.xml")
    write_html(run, tmp_path / "report.html")
    for name in ("validation.json", "junit.xml", "report.html"):
        assert mode(tmp_path / name) == 0o644, name
    # A rewrite replaces a file left private by an older goldsmith.
    (tmp_path / "report.html").chmod(0o600)
    write_html(run, tmp_path / "report.html")
    assert mode(tmp_path / "report.html") == 0o644
    # Nothing else is left behind: the temporary files were renamed into place.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "junit.xml",
        "report.html",
        "validation.json",
    ]


def test_manifest_report_is_0644_under_umask_077(tmp_path: Path, umask_077: None) -> None:
    manifest = write_envelope(tmp_path, make_statement())
    out = tmp_path / "manifest.html"
    group = GoldsmithGroup("goldsmith")
    for command in COMMANDS:
        group.add_command(command)
    result = CliRunner().invoke(group, ["report", str(manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o644
