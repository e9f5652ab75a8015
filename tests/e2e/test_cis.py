"""Issue: the CIS level 1 catalog, applied at build time and proven at validation time."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import only_result

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]


def test_cis_level1_release_passes_every_non_waived_control(
    cis_artifact: Path, signing_key: Path, goldsmith_json: Callable[..., Any]
) -> None:
    # release validates (nothing approved this image yet) and signs only if approved.
    released = only_result(
        goldsmith_json(
            "release",
            REPO / "templates/debian-12-cis-level1.yaml",
            "--key",
            signing_key,
            "--out",
            cis_artifact.parent,
            "--json",
        )
    )
    assert released["validated"] is True
    run = json.loads((cis_artifact / "validation.json").read_text())
    controls = [r for r in run["results"] if r["area"] not in ("hygiene", "user")]
    assert len(controls) >= 120
    bad = [(r["id"], r["observed"]) for r in controls if r["status"] in ("failed", "error")]
    assert bad == []
    waived = [r for r in controls if r["status"] == "waived"]
    assert waived and all(r["reason"] for r in waived)
    verdict = goldsmith_json("verify", cis_artifact, "--key", f"{signing_key}.pub", "--json")
    assert verdict["trusted"] is True


def test_unhardened_base_fails_cis_controls_across_areas(
    unhardened_artifact: Path, goldsmith_json: Callable[..., Any]
) -> None:
    result = goldsmith_json(
        "validate", unhardened_artifact, "--profile", "cis-level1-server", "--json", expect=1
    )
    run = json.loads((unhardened_artifact / "validation.json").read_text())
    controls = [r for r in run["results"] if r["area"] not in ("hygiene", "user")]
    failed = [r for r in controls if r["status"] in ("failed", "error")]
    judged = [r for r in controls if r["status"] in ("passed", "failed", "error")]
    assert result["approved"] is False
    # Not "most": the Debian 13 mapping added controls that a stock image
    # already meets (apt's folder modes, no prelink). What matters is that the
    # profile catches an unhardened image widely, in nearly every area.
    assert len(failed) >= 0.4 * len(judged), f"{len(failed)} of {len(judged)} failed"
    areas = {r["area"] for r in failed}
    assert len(areas) >= 12, sorted(areas)
