from __future__ import annotations

import datetime
import re
import stat
import types
from pathlib import Path

import pytest

from builder import artifact
from builder.artifact import artifact_folder, utc_now
from builder.errors import InputError

NAME = "debian-12-baseline-1.0.0"


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def fill_like_a_build(work: Path) -> None:
    for name in ("build.log", "serial.log", "serial.qemu-stderr", "build.json"):
        (work / name).write_text(f"{name} text\n")
    for name in ("disk.qcow2", "overlay.qcow2", "seed.iso", "qmp.sock"):
        (work / name).write_bytes(b"QFI\xfb image bytes")
    (work / "scratch").mkdir()
    (work / "scratch" / "base.qcow2").write_bytes(b"QFI\xfb")


def test_a_successful_build_becomes_the_final_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"

    with artifact_folder(out, NAME) as work:
        # Work happens out of sight, private to the builder.
        assert work.parent == out and work.name.startswith(f".{NAME}.work-")
        assert stat.S_IMODE(work.stat().st_mode) == 0o700
        assert not (out / NAME).exists()
        fill_like_a_build(work)

    final = out / NAME
    assert names(out) == [NAME]
    # Only the build's products remain; run-time files are gone.
    assert names(final) == [
        "build.json",
        "build.log",
        "disk.qcow2",
        "scratch",
        "serial.log",
        "serial.qemu-stderr",
    ]
    assert stat.S_IMODE(final.stat().st_mode) == 0o755


def test_a_failed_build_keeps_logs_and_no_disk_image(tmp_path: Path) -> None:
    out = tmp_path / "out"

    with pytest.raises(RuntimeError, match="apt-get failed"), artifact_folder(out, NAME) as work:
        fill_like_a_build(work)
        raise RuntimeError("apt-get failed")

    (failed,) = out.iterdir()
    assert re.fullmatch(rf"{re.escape(NAME)}\.FAILED-\d{{8}}-\d{{6}}-[0-9a-f]{{4}}", failed.name)
    assert names(failed) == ["build.json", "build.log", "serial.log", "serial.qemu-stderr"]
    assert (failed / "build.log").read_text() == "build.log text\n"
    assert not list(failed.rglob("*.qcow2")) and not list(failed.rglob("*.iso"))
    assert not (out / NAME).exists()


def test_an_interrupted_build_is_kept_as_failed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), artifact_folder(out, NAME) as work:
        (work / "serial.log").write_text("booting\n")
        (work / "overlay.qcow2").write_bytes(b"QFI\xfb")
        raise KeyboardInterrupt
    (failed,) = out.iterdir()
    assert ".FAILED-" in failed.name
    assert names(failed) == ["serial.log"]


def test_an_existing_artifact_is_not_replaced_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    final = out / NAME
    final.mkdir(parents=True)
    (final / "disk.qcow2").write_bytes(b"the released template")

    with pytest.raises(InputError) as info, artifact_folder(out, NAME):
        pytest.fail("no work may start")

    error = info.value
    assert error.exit_code == 2
    assert str(final) in error.message
    assert error.hint == "use --force"
    assert names(out) == [NAME]
    assert (final / "disk.qcow2").read_bytes() == b"the released template"


def test_force_replaces_the_existing_artifact(tmp_path: Path) -> None:
    out = tmp_path / "out"
    final = out / NAME
    final.mkdir(parents=True)
    (final / "disk.qcow2").write_bytes(b"old")
    (final / "stale-only-in-old").write_text("x")

    with artifact_folder(out, NAME, force=True) as work:
        # The old artifact stays in place while the new one is built.
        assert (final / "disk.qcow2").read_bytes() == b"old"
        (work / "disk.qcow2").write_bytes(b"new")

    assert names(out) == [NAME]
    assert names(final) == ["disk.qcow2"]
    assert (final / "disk.qcow2").read_bytes() == b"new"


def test_a_failed_forced_build_leaves_the_old_artifact(tmp_path: Path) -> None:
    out = tmp_path / "out"
    final = out / NAME
    final.mkdir(parents=True)
    (final / "disk.qcow2").write_bytes(b"old")

    with pytest.raises(RuntimeError), artifact_folder(out, NAME, force=True) as work:
        (work / "disk.qcow2").write_bytes(b"half")
        raise RuntimeError("seal failed")

    assert (final / "disk.qcow2").read_bytes() == b"old"
    assert len([p for p in out.iterdir() if ".FAILED-" in p.name]) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


class _FrozenClock(datetime.datetime):
    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> _FrozenClock:
        return cls(2024, 5, 1, 12, 0, 0, tzinfo=tz)


def test_two_failures_in_the_same_second_both_keep_their_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen = types.SimpleNamespace(datetime=_FrozenClock, UTC=datetime.UTC)
    monkeypatch.setattr(artifact, "datetime", frozen)
    out = tmp_path / "out"

    for attempt in ("first", "second"):
        with pytest.raises(RuntimeError, match=attempt), artifact_folder(out, NAME) as work:
            (work / "build.log").write_text(f"{attempt} attempt\n")
            raise RuntimeError(f"{attempt} build failed")

    logs = sorted((p / "build.log").read_text() for p in out.iterdir())
    assert logs == ["first attempt\n", "second attempt\n"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_utc_now_is_an_rfc3339_utc_stamp() -> None:
    stamp = utc_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    parsed = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert abs((datetime.datetime.now(datetime.UTC) - parsed).total_seconds()) < 5
