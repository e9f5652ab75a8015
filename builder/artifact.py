"""The artifact folder: work happens in a hidden folder beside the output and
is renamed into place only when complete. A failed or interrupted build keeps
its logs in a folder plainly marked failed, without any disk image that could
pass for a template."""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from builder.errors import InputError
from builder.log import log
from builder.record import BUILD_RECORD_NAME

# A failed build's folder keeps what explains the failure, never a disk image.
KEEP_ON_FAILURE = ("build.log", "serial.log", "serial.qemu-stderr", BUILD_RECORD_NAME)
_DEFERRED = (signal.SIGINT, signal.SIGTERM)


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then act on them.

    For the few file operations that must finish once begun: emptying a
    failed work folder and renaming it, or swapping a new artifact for an old
    one. A second Ctrl-C there would otherwise leave a hidden work folder with
    a disk image in it, or no artifact at all between two renames. A Python
    handler (not a signal mask) because any thread may receive a signal.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous: dict[int, Any] = {sig: signal.signal(sig, remember) for sig in _DEFERRED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            _redeliver(received[0], previous[received[0]])


def _redeliver(signum: int, handler: Any) -> None:
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)  # the default action, now that the work is safe


@contextlib.contextmanager
def artifact_folder(out: Path, name: str, *, force: bool = False) -> Iterator[Path]:
    """Yield a work folder that becomes ``out/name`` when the block succeeds.

    BaseException, not Exception: Ctrl-C (KeyboardInterrupt) and SIGTERM
    during a build must also leave ``name.FAILED-<time>/`` with the logs and
    nothing that could pass for a template.
    """
    out.mkdir(parents=True, exist_ok=True)
    final = out / name
    if final.exists() and not force:
        raise InputError(
            final, None, "an artifact with this name and version exists", hint="use --force"
        )
    work = out / f".{name}.work-{secrets.token_hex(4)}"
    work.mkdir(mode=0o700)
    try:
        yield work
    except BaseException:
        with deferred_signals():
            _keep_as_failed(out, name, work)
        raise
    with deferred_signals():
        try:
            _publish(out, name, work)
        except BaseException:
            if work.exists():
                _keep_as_failed(out, name, work)
            raise


def _keep_as_failed(out: Path, name: str, work: Path) -> None:
    # The random part keeps two failures in the same second apart.
    stamp = f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    failed = out / f"{name}.FAILED-{stamp}"
    for item in work.iterdir():
        if item.name not in KEEP_ON_FAILURE:
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
    os.replace(work, failed)
    log.error("build failed; logs kept in %s", failed)


def _publish(out: Path, name: str, work: Path) -> None:
    final = out / name
    for leftover in ("seed.iso", "overlay.qcow2", "qmp.sock"):
        (work / leftover).unlink(missing_ok=True)
    work.chmod(0o755)
    if final.exists():
        old = out / f".{name}.replaced-{secrets.token_hex(4)}"
        os.replace(final, old)
        try:
            os.replace(work, final)
        except BaseException:
            os.replace(old, final)  # the released artifact stays where it was
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, final)
