"""Stage logging: elapsed times and a heartbeat while a stage runs long."""

from __future__ import annotations

import logging
import time

import pytest

from builder import log as logmod
from builder.log import complete_step


def _wait_for(caplog: pytest.LogCaptureFixture, text: str, start: int = 0) -> None:
    """Until a record holds ``text`` (a loaded machine schedules threads late)."""
    deadline = time.monotonic() + 30
    while not any(text in r.getMessage() for r in caplog.records[start:]):
        assert time.monotonic() < deadline, f"no {text!r} within 30 s"
        time.sleep(0.01)


def test_a_long_stage_beats_with_its_detail_and_nested_stages_speak_for_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(logmod, "HEARTBEAT_SECONDS", 0.05)
    caplog.set_level(logging.INFO, logger="goldsmith")
    logmod.log.propagate = True
    try:
        with complete_step("Booting", detail=lambda: "first\n\x1b[2Jlogin: "):
            _wait_for(caplog, "still: Booting")
            with complete_step("Inner"):
                time.sleep(0.1)  # a beat of the outer stage may be on its way
                before = len(caplog.records)
                _wait_for(caplog, "still: Inner", start=before)
                time.sleep(0.2)
                inner = [r.getMessage() for r in caplog.records[before:]]
    finally:
        logmod.log.propagate = False
    messages = [r.getMessage() for r in caplog.records]
    beats = [m for m in messages if "still: Booting" in m]
    assert beats, messages
    # The console line is shown escaped: a guest cannot clear the host's terminal.
    assert beats[0].endswith("; last console line: \\x1b[2Jlogin:")
    assert all("still: Booting" not in m for m in inner)
    assert any("still: Inner" in m for m in inner)
    assert messages[-1].startswith("Booting done in ")


def test_no_heartbeat_after_the_stage_ends(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(logmod, "HEARTBEAT_SECONDS", 0.05)
    caplog.set_level(logging.INFO, logger="goldsmith")
    logmod.log.propagate = True
    try:
        with complete_step("Quick"):
            pass
        count = len(caplog.records)
        time.sleep(0.2)
        assert len(caplog.records) == count
    finally:
        logmod.log.propagate = False


def test_a_full_disk_under_build_log_is_one_warning_not_a_traceback_per_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """/dev/full fails every write with ENOSPC, as a full output disk does."""
    from pathlib import Path

    with logmod.log_to_file(Path("/dev/full")):
        for n in range(3):
            logmod.log.warning("line %d", n)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "cannot write /dev/full" in line]
    assert len(warnings) == 1, err
    assert "No space left on device" in warnings[0]
    assert "Traceback" not in err and "Logging error" not in err
