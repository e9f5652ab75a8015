"""A digest-addressed cache for base images and downloads.

Entries are folders named by a digest. An entry is made in a temporary folder
beside it and renamed into place, under an exclusive lock, so concurrent
builds never see or write half an entry.
"""

from __future__ import annotations

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


def hash_file(path: Path, *algorithms: str) -> dict[str, str]:
    """Stream a file once through each named hash; returns name -> hex."""
    hashers = {name: hashlib.new(name) for name in (algorithms or ("sha256",))}
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            for h in hashers.values():
                h.update(view[:n])
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
