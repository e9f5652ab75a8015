from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from builder.cache import HASH_CHUNK, cache_root, digest_json, hash_file, locked, new_entry

# --- digest_json ----------------------------------------------------------------


def test_digest_json_ignores_key_order_at_every_depth() -> None:
    one = {"suite": "bookworm", "mirror": {"url": "http://deb", "arch": "amd64"}, "n": [1, 2]}
    two = {"n": [1, 2], "mirror": {"arch": "amd64", "url": "http://deb"}, "suite": "bookworm"}
    assert digest_json(one) == digest_json(two)


def test_digest_json_is_sha256_of_compact_sorted_json() -> None:
    expected = hashlib.sha256(b'{"a":[1,"\\u00e9"],"b":null}').hexdigest()
    assert digest_json({"b": None, "a": [1, "é"]}) == expected


def test_digest_json_changes_with_any_value() -> None:
    base = {"suite": "bookworm", "packages": ["openssh-server", "sudo"]}
    assert digest_json(base) != digest_json({**base, "suite": "trixie"})
    # List order is meaning, not formatting.
    assert digest_json(base) != digest_json({**base, "packages": ["sudo", "openssh-server"]})


# --- hash_file --------------------------------------------------------------------


def test_hash_file_matches_hashlib_on_a_multi_chunk_file(tmp_path: Path) -> None:
    data = os.urandom(3 * HASH_CHUNK + 12345)
    path = tmp_path / "disk.qcow2"
    path.write_bytes(data)

    digests = hash_file(path, "sha256", "sha512")

    assert digests == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha512": hashlib.sha512(data).hexdigest(),
    }


def test_hash_file_defaults_to_sha256(tmp_path: Path) -> None:
    path = tmp_path / "exact"
    data = os.urandom(HASH_CHUNK)  # ends exactly on a chunk boundary
    path.write_bytes(data)
    assert hash_file(path) == {"sha256": hashlib.sha256(data).hexdigest()}


def test_hash_file_of_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert hash_file(path, "sha512") == {"sha512": hashlib.sha512(b"").hexdigest()}


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 7])
def test_hash_file_matches_hashlib_across_chunk_boundaries(tmp_path: Path, size: int) -> None:
    data = bytes((i * 7 + 3) % 251 for i in range(size))
    path = tmp_path / "f"
    path.write_bytes(data)
    digests = hash_file(path, "sha256", "sha512", "sha384", chunk_size=4096)
    assert digests == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha512": hashlib.sha512(data).hexdigest(),
        "sha384": hashlib.sha384(data).hexdigest(),
    }
    assert hash_file(path, "sha256", chunk_size=4096) == {
        "sha256": hashlib.sha256(data).hexdigest()
    }


# --- cache_root -------------------------------------------------------------------


def test_cache_root_prefers_goldsmith_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOLDSMITH_CACHE", str(tmp_path / "gs"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "gs"
    assert (tmp_path / "gs").is_dir()


def test_cache_root_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOLDSMITH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "goldsmith"
    assert cache_root().is_dir()


# --- new_entry ----------------------------------------------------------------------


def test_a_finished_entry_appears_whole(tmp_path: Path) -> None:
    final = tmp_path / "bases" / ("ab" * 32)

    with new_entry(final) as work:
        assert work.parent == final.parent and work.name.startswith(f".{final.name}.")
        (work / "base.qcow2").write_bytes(b"image")
        (work / "kernel").write_bytes(b"vmlinuz")
        # Until the block ends, the entry does not exist under its name.
        assert not final.exists()

    assert sorted(p.name for p in final.iterdir()) == ["base.qcow2", "kernel"]
    assert (final / "base.qcow2").read_bytes() == b"image"
    assert [p.name for p in final.parent.iterdir()] == [final.name]


def test_a_failed_entry_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "bases" / ("cd" * 32)

    with pytest.raises(RuntimeError, match="mmdebstrap failed"), new_entry(final) as work:
        (work / "base.qcow2").write_bytes(b"half an image")
        raise RuntimeError("mmdebstrap failed")

    assert not final.exists()
    assert list(final.parent.iterdir()) == []


def test_an_interrupted_entry_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with pytest.raises(KeyboardInterrupt), new_entry(final) as work:
        (work / "partial").write_bytes(b"x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_an_entry_made_meanwhile_is_kept(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with new_entry(final) as work:
        (work / "mine").write_bytes(b"late")
        final.mkdir()
        (final / "theirs").write_bytes(b"first")

    assert [p.name for p in final.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


# --- locked ---------------------------------------------------------------------------


def test_locked_serialises_threads(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "entry.lock"
    events: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with locked(lock):
            events.append("first in")
            first_in.set()
            time.sleep(0.2)
            events.append("first out")

    def second() -> None:
        first_in.wait(timeout=5)
        with locked(lock):
            events.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)

    assert events == ["first in", "first out", "second in"]
    assert lock.exists()


CHILD = """
import sys
from pathlib import Path
from builder.cache import locked
with locked(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
"""


def try_lock(path: Path) -> bool:
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def test_locked_excludes_another_process(tmp_path: Path) -> None:
    lock = tmp_path / "entry.lock"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == "held\n"
        assert not try_lock(lock)
        child.stdin.write("release\n")
        child.stdin.flush()
        assert child.wait(timeout=5) == 0
        assert try_lock(lock)
    finally:
        child.kill()
        child.wait()
