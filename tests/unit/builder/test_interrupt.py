"""Ctrl-C and SIGTERM: exit 130 (143) with "interrupted", after the cleanup ran:
the work folder renamed .FAILED-* with its logs, no disk image, nothing hidden
or half-written left in --out. No VM: the build's stages are faked."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder import build
from builder.artifact import artifact_folder, deferred_signals
from builder.cli import cli
from builder.log import log

SPEC = """\
name: demo
version: "1.0.0"
base:
  debootstrap:
    suite: bookworm
profile: baseline
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(SPEC)
    return path


def half_a_build(work: Path) -> None:
    """What a build has written when Ctrl-C arrives during the build VM."""
    (work / "serial.log").write_text("[    0.000000] Linux version ...\n")
    (work / "serial.qemu-stderr").write_text("")
    (work / "overlay.qcow2").write_bytes(b"QFI\xfb half")
    (work / "seed.iso").write_bytes(b"CD001")
    (work / "disk.qcow2").write_bytes(b"QFI\xfb half-compacted")
    (work / ".build.json.tmp").write_text('{"schema": "https://goldsmith.dev/bu')


def only_a_failed_folder(out: Path) -> Path:
    (failed,) = out.iterdir()
    assert ".FAILED-" in failed.name, failed.name
    assert not failed.name.startswith(".")
    names = sorted(p.name for p in failed.iterdir())
    assert "disk.qcow2" not in names and "overlay.qcow2" not in names
    assert not [n for n in names if n.endswith((".qcow2", ".iso", ".tmp"))]
    return failed


def test_an_interrupted_build_keeps_its_logs_as_failed(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(work: Path, *args: Any) -> dict[str, Any]:
        half_a_build(work)
        log.warning("booting the build VM")
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "_build_into", interrupted)
    out = tmp_path / "out"

    with pytest.raises(KeyboardInterrupt):
        build.build_template(spec, out)

    failed = only_a_failed_folder(out)
    assert sorted(p.name for p in failed.iterdir()) == [
        "build.log",
        "serial.log",
        "serial.qemu-stderr",
    ]
    assert "booting the build VM" in (failed / "build.log").read_text()


def test_cli_ctrl_c_exits_130_after_cleanup(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(work: Path, *args: Any) -> dict[str, Any]:
        half_a_build(work)
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "_build_into", interrupted)
    out = tmp_path / "out"

    result = CliRunner().invoke(cli, ["build", str(spec), "--out", str(out)])

    assert result.exit_code == 130, result.output
    assert result.stderr.splitlines()[-1] == "goldsmith: interrupted"
    assert "Aborted" not in result.output
    assert result.stdout == ""
    only_a_failed_folder(out)


def test_cli_sigterm_unwinds_like_ctrl_c_and_exits_143(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def terminated(work: Path, *args: Any) -> dict[str, Any]:
        half_a_build(work)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises long before this ends
        raise AssertionError("SIGTERM did not interrupt the build")

    monkeypatch.setattr(build, "_build_into", terminated)
    out = tmp_path / "out"
    before = signal.getsignal(signal.SIGTERM)

    result = CliRunner().invoke(cli, ["build", str(spec), "--out", str(out)])

    assert result.exit_code == 143, result.output
    assert result.stderr.splitlines()[-1] == "goldsmith: interrupted (SIGTERM)"
    only_a_failed_folder(out)
    assert signal.getsignal(signal.SIGTERM) == before


def test_deferred_signals_hold_ctrl_c_until_the_block_ends() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), deferred_signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        done.append("the block finished")
    assert done == ["the block finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_during_cleanup_still_leaves_a_failed_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_rmtree = shutil.rmtree

    def impatient_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C again
        time.sleep(0.1)
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr("builder.artifact.shutil.rmtree", impatient_rmtree)
    out = tmp_path / "out"

    with pytest.raises(KeyboardInterrupt), artifact_folder(out, "demo-1.0.0") as work:
        (work / "build.log").write_text("log\n")
        (work / "scratch").mkdir()
        (work / "scratch" / "base.qcow2").write_bytes(b"QFI\xfb")
        raise KeyboardInterrupt

    failed = only_a_failed_folder(out)
    assert sorted(p.name for p in failed.iterdir()) == ["build.log"]


def test_ctrl_c_while_publishing_keeps_the_old_artifact_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    final = out / "demo-1.0.0"
    final.mkdir(parents=True)
    (final / "disk.qcow2").write_bytes(b"old")
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        if Path(dst).name.startswith(".demo-1.0.0.replaced-"):
            # Between moving the old artifact aside and moving the new one in.
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)

    monkeypatch.setattr("builder.artifact.os.replace", replace)

    with pytest.raises(KeyboardInterrupt), artifact_folder(out, "demo-1.0.0", force=True) as w:
        (w / "disk.qcow2").write_bytes(b"new")

    # The swap finished before the interruption was acted on.
    assert sorted(p.name for p in out.iterdir()) == ["demo-1.0.0"]
    assert (final / "disk.qcow2").read_bytes() == b"new"


def test_a_real_process_interrupted_by_sigint(spec: Path, tmp_path: Path) -> None:
    # The whole way through: a goldsmith process, a build stage that waits,
    # SIGINT as a terminal sends it, and what is left on disk.
    out = tmp_path / "out"
    ready = tmp_path / "ready"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from builder import build
        from builder.cli import main

        def waiting(work, *args):
            (work / "serial.log").write_text("booting\\n")
            (work / "overlay.qcow2").write_bytes(b"QFI")
            Path({str(ready)!r}).write_text("")
            time.sleep(60)

        build._build_into = waiting
        sys.argv = ["goldsmith", "build", {str(spec)!r}, "--out", {str(out)!r}]
        main()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the fake build never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 130, stderr
    assert stderr.splitlines()[-1] == "goldsmith: interrupted"
    assert stdout == ""
    failed = only_a_failed_folder(out)
    assert sorted(p.name for p in failed.iterdir()) == ["build.log", "serial.log"]
