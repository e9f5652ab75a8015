"""Logging and progress: stages with elapsed time go to stderr, never stdout."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("goldsmith")

_START = time.monotonic()
_depth = 0


class _ProgressFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        elapsed = record.created - (time.time() - (time.monotonic() - _START))
        prefix = f"[{elapsed:7.1f}s] "
        if record.levelno >= logging.WARNING:
            prefix += f"{record.levelname.lower()}: "
        return prefix + record.getMessage()


def setup_logging(level: int = logging.INFO) -> None:
    log.setLevel(logging.DEBUG)
    for handler in list(log.handlers):
        if getattr(handler, "_goldsmith_console", False):
            log.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(_ProgressFormatter())
    console._goldsmith_console = True  # type: ignore[attr-defined]
    log.addHandler(console)
    log.propagate = False
    # paramiko logs every failed connection attempt (expected while a guest
    # boots) with a traceback; goldsmith reports connection failures itself.
    paramiko_log = logging.getLogger("paramiko")
    paramiko_log.setLevel(logging.CRITICAL)
    paramiko_log.propagate = False
    if not paramiko_log.handlers:
        paramiko_log.addHandler(logging.NullHandler())


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[logging.Handler]:
    """Copy everything goldsmith logs (debug included) into ``path`` for the duration."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        handler.close()


@contextlib.contextmanager
def complete_step(text: str) -> Iterator[None]:
    """Log a stage, then its elapsed time once it ends (or that it failed)."""
    global _depth
    indent = "  " * _depth
    log.info("%s%s", indent, text)
    start = time.monotonic()
    _depth += 1
    try:
        yield
    except BaseException:
        log.info("%s%s failed after %.1fs", indent, text, time.monotonic() - start)
        raise
    finally:
        _depth -= 1
    log.info("%s%s done in %.1fs", indent, text, time.monotonic() - start)
