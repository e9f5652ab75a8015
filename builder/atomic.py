"""Files written whole or not at all: records, reports and keys.

The bytes go to a temporary file in the destination's folder, are flushed to
disk, and only then take the file's name; the folder is flushed too, so after a
crash or power cut the name holds either the old file or the complete new one,
never a truncated record that a later build, ``history`` or ``verify`` would
read. A failed write leaves no temporary file behind.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

# Hard links are how a file takes a name only if the name is free; some file
# systems (FAT on a removable drive, some network mounts) have none.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


def write_atomically(
    path: Path, data: bytes | str, *, mode: int | None = None, replace: bool = True
) -> None:
    """Write ``data`` (str as UTF-8) to ``path`` through a temporary file, fsynced.

    ``mode``: the file's exact permissions, whatever the umask (set on the file
    before it has the name, and given at creation so a secret is never readable
    by others even for a moment); None leaves them to the umask, as ``open``
    would. ``replace=False`` never overwrites: FileExistsError if ``path``
    exists, also when it appears while the data is written (keys are never
    overwritten: a signing key lost is lost for good).
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    folder = path.parent
    tmp = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        elif not _link(tmp, path):
            _write_new(path, raw, mode)
    finally:
        tmp.unlink(missing_ok=True)  # after a link, or a failure: the name is not ours
    sync_folder(folder)


def _link(tmp: Path, path: Path) -> bool:
    """Give the written file ``path`` too, if that name is free (FileExistsError
    if not); False on a file system without hard links."""
    try:
        os.link(tmp, path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_HARD_LINKS:
            return False
        raise
    return True


def _write_new(path: Path, raw: bytes, mode: int | None) -> None:
    """Without hard links: create the name exclusively and write in place (a
    crash mid-write can leave it short, but never overwrites anything)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o666 if mode is None else mode)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
        f.flush()
        if mode is not None:
            os.fchmod(f.fileno(), mode)
        os.fsync(f.fileno())


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk. File systems that
    cannot fsync a directory say EINVAL; there is nothing more to do there."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)
