"""Issues: signed releases verified as a deployment gate; CI pipelines that
rebuild only when something changed; two templates built side by side."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import only_result

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]


def test_parallel_builds_are_separate(parallel_build: list[dict[str, Any]]) -> None:
    assert len(parallel_build) == 4
    assert [r["exit_code"] for r in parallel_build] == [0] * len(parallel_build)
    artifacts = [Path(r["result"]["artifact"]) for r in parallel_build]
    assert len(set(artifacts)) == len(parallel_build)
    images = [r["result"]["image"]["sha256"] for r in parallel_build]
    assert len(set(images)) == len(parallel_build)
    for artifact in artifacts:
        assert (artifact / "disk.qcow2").is_file()


def test_second_build_is_a_no_op(
    baseline_artifact: Path, goldsmith_json: Callable[..., Any]
) -> None:
    before = (baseline_artifact / "disk.qcow2").stat().st_mtime_ns
    start = time.monotonic()
    result = only_result(
        goldsmith_json(
            "build",
            REPO / "templates/debian-12-baseline.yaml",
            "--out",
            baseline_artifact.parent,
            "--json",
        )
    )
    elapsed = time.monotonic() - start
    assert result["reused"] is True
    assert Path(result["artifact"]) == baseline_artifact
    assert (baseline_artifact / "disk.qcow2").stat().st_mtime_ns == before
    assert elapsed < 60  # no VM was booted (a TCG boot alone takes longer)


def test_release_then_verify(
    baseline_artifact: Path,
    baseline_release: dict[str, Any],
    signing_key: Path,
    goldsmith_json: Callable[..., Any],
) -> None:
    assert Path(baseline_release["artifact"]) == baseline_artifact
    verdict = goldsmith_json("verify", baseline_artifact, "--key", f"{signing_key}.pub", "--json")
    assert verdict["trusted"] is True
    envelope = json.loads((baseline_artifact / "manifest.dsse.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    sha256sum = subprocess.run(
        ["sha256sum", str(baseline_artifact / "disk.qcow2")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    assert statement["subject"][0]["digest"]["sha256"] == sha256sum
    assert statement["predicate"]["profile"]["id"] == "baseline"


def test_outdated_after_a_profile_change(
    baseline_artifact: Path,
    baseline_release: dict[str, Any],
    tmp_path: Path,
    goldsmith_json: Callable[..., Any],
) -> None:
    profile = tmp_path / "baseline-site.yaml"
    profile.write_text(
        "id: baseline-site\nversion: 1.0.0\ntitle: baseline with a site waiver\n"
        "extends: baseline\n"
        "waivers:\n  - control: kernel-dmesg-restrict\n"
        "    reason: support staff read dmesg without sudo\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        (REPO / "templates/debian-12-baseline.yaml")
        .read_text()
        .replace("profile: baseline", f"profile: {profile}")
    )
    manifest = baseline_artifact / "manifest.dsse.json"
    changed = goldsmith_json("outdated", spec, "--manifest", manifest, "--json", expect=1)
    assert "profile" in json.dumps(changed).lower()
