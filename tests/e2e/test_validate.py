"""Issue: prove a sealed template in a fresh boot with testinfra, and report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder.cloudinit import read_status, wait_script
from builder.seed import new_access
from builder.ssh import HostKeyMismatchError, connect
from validate.boot import boot_artifact

pytestmark = pytest.mark.vm


def test_template_is_approved(baseline_validation: dict[str, Any]) -> None:
    assert baseline_validation["approved"] is True
    assert baseline_validation["failed"] == []
    counts = baseline_validation["counts"]
    assert counts["passed"] >= 12 + 9  # the baseline's controls plus the hygiene checks
    assert counts["failed"] == counts["error"] == 0


def test_every_control_and_hygiene_check_passed(
    baseline_artifact: Path, baseline_validation: dict[str, Any]
) -> None:
    run = json.loads((baseline_artifact / "validation.json").read_text())
    record = json.loads((baseline_artifact / "build.json").read_text())
    assert run["image"]["sha256"] == record["image"]["sha256"]  # the image was not changed
    by_id = {r["id"]: r for r in run["results"]}
    for check in (
        "HYG-01",
        "HYG-02",
        "HYG-03",
        "HYG-04",
        "HYG-05",
        "HYG-06",
        "HYG-07",
        "HYG-08",
        "HYG-09",
    ):
        assert by_id[check]["status"] == "passed", by_id[check]
    # machine-id and host keys differ from the build VM's.
    assert record["build_vm"]["machine_id"] not in by_id["HYG-03"]["observed"]
    for fingerprint in record["build_vm"]["host_keys"].values():
        assert fingerprint not in by_id["HYG-04"]["observed"]
    controls = [r for r in run["results"] if r["area"] not in ("hygiene", "user")]
    assert len(controls) >= 12
    assert all(r["status"] in ("passed", "waived", "skipped") for r in controls)
    user = [r for r in run["results"] if r["area"] == "user"]
    assert len(user) == 3 and all(r["status"] == "passed" for r in user)
    assert len(run["packages"]) > 100
    assert run["timings"]["boot"] > 0 and run["timings"]["facts"] > 0


def test_reports_written(baseline_artifact: Path, baseline_validation: dict[str, Any]) -> None:
    html = (baseline_artifact / "report.html").read_text()
    assert "debian-12-baseline" in html and "APPROVED" in html
    junit = (baseline_artifact / "junit.xml").read_text()
    assert "<testsuite" in junit and 'failures="0"' in junit


def test_unhardened_base_fails_the_baseline(
    unhardened_artifact: Path, goldsmith_json: Callable[..., dict[str, Any]]
) -> None:
    result = goldsmith_json(
        "validate", unhardened_artifact, "--profile", "baseline", "--json", expect=1
    )
    assert result["approved"] is False
    failed = set(result["failed"])
    controls_failed = [f for f in failed if not f.startswith("HYG-")]
    # Most of the baseline does not hold on a stock Debian image.
    assert len(controls_failed) >= 10, failed


def test_wrong_host_key_is_refused(unhardened_artifact: Path) -> None:
    access = new_access("gsvalidate", "validate")
    with boot_artifact(unhardened_artifact / "disk.qcow2", access=access) as guest:
        # cloud-init's config stage restarts sshd on a stock image (ssh_pwauth);
        # a connection made while it restarts reads EOF. Let it finish first.
        _, stdout, _ = guest.client.exec_command(wait_script(900))
        assert read_status(stdout.read().decode()).status in ("done", "error")
        impostor = new_access("gsvalidate", "validate")
        wrong_pin = type(access)(
            run_id=access.run_id,
            user=access.user,
            client_key=access.client_key,
            host_key=impostor.host_key,
        )
        with pytest.raises(HostKeyMismatchError, match="refusing to connect"):
            connect(wrong_pin, guest.machine.ssh_port)
        # The right pin still works on the same guest.
        client = connect(access, guest.machine.ssh_port)
        client.close()
