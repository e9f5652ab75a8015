"""validate/run.py scans the image's blocks while the guest boots, and always
waits for the scan: a failed boot does not leave it reading the image."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder.errors import GuestError
from hardening.results import CheckResult
from validate import run

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "golden" / "debian-12-baseline-1.0.0"


def test_the_scan_runs_during_the_boot_and_is_joined_when_the_boot_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = tmp_path / GOLDEN.name
    artifact.mkdir()
    for name in ("build.json", "disk.qcow2"):
        shutil.copy(GOLDEN / name, artifact / name)
    booting = threading.Event()
    seen: dict[str, Any] = {}

    def scan(disk: Path, record: Any, secrets: Any) -> list[CheckResult]:
        seen["thread"] = threading.current_thread().name
        # Only a scan running beside the boot sees the boot start.
        seen["overlapped"] = booting.wait(timeout=30)
        seen["finished"] = True
        return []

    @contextlib.contextmanager
    def boot(disk: Path, **kwargs: Any) -> Iterator[Any]:
        booting.set()
        raise GuestError("the guest did not come up")
        yield  # pragma: no cover

    monkeypatch.setattr(run, "check_disk_blocks", scan)
    monkeypatch.setattr(run, "boot_artifact", boot)
    with pytest.raises(GuestError, match="did not come up"):
        run.validate_artifact(artifact)
    assert seen["overlapped"] is True
    assert seen["thread"].startswith("goldsmith-blockscan")
    # Joined before the error reached the caller.
    assert seen.get("finished") is True
    assert not any(t.name.startswith("goldsmith-blockscan") for t in threading.enumerate())
    assert not (artifact / "validation.json").exists()
