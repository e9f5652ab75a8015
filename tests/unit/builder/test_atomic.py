"""write_atomically: whole or not at all, flushed to disk, with the mode asked for."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.atomic import write_atomically


@pytest.fixture
def umask_077() -> Iterator[None]:
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What was fsynced, in order: 'file' or 'folder'."""
    real = os.fsync
    seen: list[str] = []

    def fsync(fd: int) -> None:
        seen.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_replaces_the_file_and_flushes_it_then_its_folder(
    tmp_path: Path, synced: list[str]
) -> None:
    path = tmp_path / "build.json"
    path.write_text("old\n")
    write_atomically(path, "new\n")
    assert path.read_text() == "new\n"
    assert synced == ["file", "folder"]
    assert [p.name for p in tmp_path.iterdir()] == ["build.json"]


def test_bytes_are_written_as_given(tmp_path: Path) -> None:
    write_atomically(tmp_path / "junit.xml", b"<?xml?>\xc3\xa9\n")
    assert (tmp_path / "junit.xml").read_bytes() == b"<?xml?>\xc3\xa9\n"


def test_the_mode_is_exact_whatever_the_umask(tmp_path: Path, umask_077: None) -> None:
    write_atomically(tmp_path / "report.html", "<p>", mode=0o644)
    assert mode(tmp_path / "report.html") == 0o644
    (tmp_path / "report.html").chmod(0o600)
    write_atomically(tmp_path / "report.html", "<p>", mode=0o644)
    assert mode(tmp_path / "report.html") == 0o644


def test_without_a_mode_the_umask_decides_as_open_would(tmp_path: Path, umask_077: None) -> None:
    write_atomically(tmp_path / "build.json", "{}\n")
    assert mode(tmp_path / "build.json") == 0o600
    os.umask(0o022)
    write_atomically(tmp_path / "build.json", "{}\n")
    assert mode(tmp_path / "build.json") == 0o644


def test_a_secret_is_never_readable_by_others_even_before_its_chmod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[int] = []
    real_open = os.open

    def spy(path: str | os.PathLike[str], flags: int, mode: int = 0o777, **kw: object) -> int:
        fd = real_open(path, flags, mode)
        if flags & os.O_CREAT:
            created.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return fd

    monkeypatch.setattr(os, "open", spy)
    old = os.umask(0)
    try:
        write_atomically(tmp_path / "key.pem", b"secret", mode=0o600, replace=False)
    finally:
        os.umask(old)
    assert created == [0o600]
    assert mode(tmp_path / "key.pem") == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "validation.json"
    path.write_text("old\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["validation.json"]


def test_without_replace_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"the only copy")
    with pytest.raises(FileExistsError):
        write_atomically(path, b"another key", mode=0o600, replace=False)
    assert path.read_bytes() == b"the only copy"
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]


def test_without_replace_a_dangling_symlink_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "key.pem").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        write_atomically(tmp_path / "key.pem", b"secret", mode=0o600, replace=False)
    assert not (tmp_path / "elsewhere").exists()


def test_without_hard_links_a_new_file_is_still_written_exclusively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synced: list[str]
) -> None:
    def no_links(src: object, dst: object, **kw: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    write_atomically(tmp_path / "key.pem", b"secret", mode=0o600, replace=False)
    assert (tmp_path / "key.pem").read_bytes() == b"secret"
    assert mode(tmp_path / "key.pem") == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]
    assert synced[-2:] == ["file", "folder"]
    with pytest.raises(FileExistsError):
        write_atomically(tmp_path / "key.pem", b"other", mode=0o600, replace=False)
    assert (tmp_path / "key.pem").read_bytes() == b"secret"


def test_a_folder_that_cannot_be_fsynced_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.fsync

    def no_dir_sync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real(fd)

    monkeypatch.setattr(os, "fsync", no_dir_sync)
    write_atomically(tmp_path / "report.html", "<p>")
    assert (tmp_path / "report.html").read_text() == "<p>"
