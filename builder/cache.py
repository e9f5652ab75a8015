"""A digest-addressed cache for base images and downloads.

Entries are folders named by a digest. An entry is made in a temporary folder
beside it and renamed into place, under an exclusive lock, so concurrent
builds never see or write half an entry.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Reads this large keep per-call overhead negligible while the buffer stays in cache.
HASH_CHUNK = 1 << 20


def cache_root() -> Path:
    env = os.environ.get("GOLDSMITH_CACHE")
    if env:
        root = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "goldsmith"
    root.mkdir(parents=True, exist_ok=True)
    return root


def digest_json(data: Any) -> str:
    """sha256 hex of a canonical JSON encoding (sorted keys, no whitespace)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def hash_file(path: Path, *algorithms: str, chunk_size: int = HASH_CHUNK) -> dict[str, str]:
    """Stream a file once through each named hash (sha256 by default); returns name -> hex.

    hashlib releases the GIL on large buffers, so every digest after the first
    runs in a worker thread while this thread feeds the first one and reads the
    next chunk into a second buffer: with cores to spare, the cost is that of
    the slowest digest rather than the sum of all of them.
    """
    hashers = {name: hashlib.new(name) for name in (algorithms or ("sha256",))}
    first, *others = hashers.values()
    buffers = [bytearray(chunk_size), bytearray(chunk_size)]
    views = [memoryview(b) for b in buffers]
    with (
        open(path, "rb", buffering=0) as f,
        concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(others))) as pool,
    ):
        current = 0
        n = f.readinto(buffers[current])
        while n:
            view = views[current][:n]
            pending: list[concurrent.futures.Future[Any]] = [
                pool.submit(h.update, view) for h in others
            ]
            first.update(view)
            # The other buffer is free: its chunk was hashed before the last wait.
            current ^= 1
            n = f.readinto(buffers[current])
            for future in pending:
                future.result()
    return {name: h.hexdigest() for name, h in hashers.items()}


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def new_entry(final: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes ``final`` atomically.

    On failure the temporary folder is removed and ``final`` is untouched.
    The caller holds the entry's lock.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        if final.exists():  # made meanwhile by a process that ignored the lock
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
