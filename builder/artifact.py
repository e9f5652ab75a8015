"""The artifact folder: work happens in a hidden folder beside the output and
is renamed into place only when complete. A failed build keeps its logs in a
folder plainly marked failed, without any disk image that could pass for a
template."""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from builder.errors import InputError
from builder.log import log

KEEP_ON_FAILURE = ("build.log", "serial.log", "serial.qemu-stderr", "build.json")


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def artifact_folder(out: Path, name: str, *, force: bool = False) -> Iterator[Path]:
    """Yield a work folder that becomes ``out/name`` when the block succeeds."""
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
        # The random part keeps two failures in the same second apart.
        stamp = f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        failed = out / f"{name}.FAILED-{stamp}"
        for item in work.iterdir():
            if item.name not in KEEP_ON_FAILURE:
                if item.is_dir():
                    shutil.rmtree(item, ignore_errors=True)
                else:
                    item.unlink(missing_ok=True)
        os.replace(work, failed)
        log.error("build failed; logs kept in %s", failed)
        raise
    for leftover in ("seed.iso", "overlay.qcow2", "qmp.sock"):
        (work / leftover).unlink(missing_ok=True)
    work.chmod(0o755)
    if final.exists():
        old = out / f".{name}.replaced-{secrets.token_hex(4)}"
        os.replace(final, old)
        os.replace(work, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, final)
