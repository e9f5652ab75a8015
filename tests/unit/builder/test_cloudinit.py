"""builder.cloudinit: the wait loop run by sh against files in tmp_path and a
fake systemctl, and the verdict read from cloud-init's own JSON files."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from builder.cloudinit import (
    RESULT_FILE,
    STATUS_FILE,
    CloudInitStatus,
    parse_status,
    read_status,
    wait_script,
)
from hardening.strictdata import DataError

DATASOURCE = "DataSourceNoCloud [seed=/dev/vdb][dsmode=net]"


def stage(
    errors: list[str] | None = None, finished: float | None = 12.5, **extra: object
) -> dict[str, object]:
    return {"errors": errors or [], "start": 10.0, "finished": finished, **extra}


def status_json(**stages: dict[str, object]) -> str:
    v1: dict[str, object] = {"datasource": DATASOURCE, "stage": None}
    for name in ("init-local", "init", "modules-init", "modules-config", "modules-final"):
        v1[name] = stages.get(name.replace("-", "_"), stage())
    return json.dumps({"v1": v1})


def result_json(errors: list[str] | None = None) -> str:
    return json.dumps({"v1": {"datasource": DATASOURCE, "errors": errors or []}})


def printed(status: str, result: str) -> str:
    """What wait_script prints around the two files."""
    return f"--- status.json\n{status}\n--- result.json\n{result}\n"


# --- the verdict -----------------------------------------------------------------


def test_a_finished_boot_without_errors_is_done() -> None:
    settled = parse_status(printed(status_json(), result_json()))
    assert settled == CloudInitStatus("done", DATASOURCE)
    assert settled.done and settled.text() == f"status: done\ndetail: {DATASOURCE}"


def test_an_error_in_any_stage_is_an_error_named_with_its_stage() -> None:
    failing = status_json(init=stage(["('ssh', KeyError('x'))"]))
    settled = parse_status(printed(failing, result_json(["('ssh', KeyError('x'))"])))
    assert settled.status == "error" and not settled.done
    # result.json repeats the stage's error: it is reported once.
    assert settled.errors == ("init: ('ssh', KeyError('x'))",)
    assert "errors: init: ('ssh', KeyError('x'))" in settled.text()


def test_an_error_only_in_result_json_is_an_error() -> None:
    settled = parse_status(printed(status_json(), result_json(["final message failed"])))
    assert settled.status == "error" and settled.errors == ("final message failed",)


def test_a_missing_result_or_an_unfinished_stage_is_running() -> None:
    assert parse_status(printed(status_json(), "")).status == "running"
    unfinished = status_json(modules_final=stage(finished=None))
    assert parse_status(printed(unfinished, result_json())).status == "running"


def test_a_stage_never_started_and_keys_of_newer_releases_leave_it_done() -> None:
    # 22.4 lists modules-init with start and finished null; a newer release
    # may add keys that are not stages.
    document = json.loads(status_json(modules_init=stage(finished=None) | {"start": None}))
    document["v1"]["last_update"] = "Thu, 02 May 2024 10:00:14 +0000"
    document["v1"]["new-stage"] = stage()
    settled = parse_status(printed(json.dumps(document), result_json()))
    assert settled == CloudInitStatus("done", DATASOURCE)


def test_an_error_in_a_stage_not_named_in_22_4_is_still_an_error() -> None:
    document = json.loads(status_json())
    document["v1"]["new-stage"] = stage(["boom"])
    assert parse_status(printed(json.dumps(document), result_json())).errors == ("new-stage: boom",)


def test_no_files_at_all_is_not_run() -> None:
    assert parse_status(printed("", "")) == CloudInitStatus("not run")


def test_recoverable_errors_of_newer_cloud_init_are_reported_and_leave_it_done() -> None:
    warned = status_json(init=stage(recoverable_errors={"WARNING": ["no datasource cache"]}))
    settled = parse_status(printed(warned, result_json()))
    assert settled.done and settled.recoverable == ("init WARNING: no datasource cache",)
    assert "recoverable errors: init WARNING: no datasource cache" in settled.text()


@pytest.mark.parametrize(
    "status, result, message",
    [
        ('{"v1": {"init": {}, "init": {}}}', "", "duplicate key"),
        ("[1, 2]", "", "expected an object with a v1 object"),
        ('{"v1": {"init": "yes"}}', "", "init: expected an object"),
        ('{"v1": {"init": {"errors": "x"}}}', "", "expected a list"),
        ("", "not json", "result.json"),
    ],
)
def test_files_that_are_not_cloud_inits_are_unreadable_not_a_crash(
    status: str, result: str, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        parse_status(printed(status, result))
    settled = read_status(printed(status, result))
    assert settled.status == "unreadable" and not settled.done and message in settled.errors[0]


def test_output_without_the_markers_is_unreadable() -> None:
    assert read_status("status: done\n").status == "unreadable"


# --- the wait loop, run by sh ---------------------------------------------------------


def run_wait(tmp_path: Path, boot_state: str, timeout: float = 30) -> tuple[str, float]:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\n[ "$1" = is-system-running ] && echo {boot_state}\n')
    fake.chmod(0o755)
    script = (
        wait_script(timeout)
        .replace(STATUS_FILE, str(run_dir / "status.json"))
        .replace(RESULT_FILE, str(run_dir / "result.json"))
    )
    start = time.monotonic()
    done = subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
    )
    return done.stdout, time.monotonic() - start


def test_the_loop_returns_at_once_when_cloud_init_has_finished(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run/status.json").write_text(status_json())
    (tmp_path / "run/result.json").write_text(result_json())
    output, took = run_wait(tmp_path, "starting")
    assert took < 1.0
    assert parse_status(output) == CloudInitStatus("done", DATASOURCE)


def test_the_loop_waits_for_the_final_result_while_the_boot_goes_on(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run/status.json").write_text(status_json(modules_final=stage(finished=None)))

    def finish() -> None:
        time.sleep(1.5)
        (tmp_path / "run/status.json").write_text(status_json())
        (tmp_path / "run/result.json").write_text(result_json())

    writer = threading.Thread(target=finish)
    writer.start()
    output, took = run_wait(tmp_path, "starting")
    writer.join()
    assert 1.5 <= took < 4.0
    assert parse_status(output).done


def test_a_boot_that_ended_without_a_result_ends_the_wait(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run/status.json").write_text(status_json(modules_final=stage(finished=None)))
    output, took = run_wait(tmp_path, "degraded")
    # The boot's state is asked once a second.
    assert took < 3.0
    assert parse_status(output).status == "running"


def test_the_loop_gives_up_after_its_timeout(tmp_path: Path) -> None:
    output, took = run_wait(tmp_path, "starting", timeout=1.0)
    assert 0.9 <= took < 3.0
    assert parse_status(output) == CloudInitStatus("not run")
