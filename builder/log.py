"""Logging and progress: stages with elapsed time go to stderr, never stdout."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hardening.strictdata import escape

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


class _LogFileHandler(logging.FileHandler):
    """A FileHandler that, when the file cannot be written (the disk is full),
    says so once in one line and stops writing, instead of printing logging's
    traceback for every record."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed_with(sys.exc_info()[1])

    def _failed_with(self, exc: BaseException | None) -> None:
        if self.failed:
            return
        self.failed = True
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        sys.stderr.write(
            f"warning: cannot write {self.baseFilename} ({reason}); "
            "the rest of this log is on the terminal only\n"
        )

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def close(self) -> None:
        # What is still buffered cannot be written either.
        try:
            super().close()
        except OSError as exc:
            self._failed_with(exc)


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[logging.Handler]:
    """Copy everything goldsmith logs (debug included) into ``path`` for the duration."""
    handler = _LogFileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        handler.close()


# A stage that runs longer than this says so again, and what it is waiting for:
# a silent mmdebstrap or a slow TCG boot must not look hung.
HEARTBEAT_SECONDS = 15.0


@contextlib.contextmanager
def complete_step(text: str, *, detail: Callable[[], str] | None = None) -> Iterator[None]:
    """Log a stage, then its elapsed time once it ends (or that it failed).

    While it runs, the innermost open stage logs a heartbeat every
    HEARTBEAT_SECONDS, with ``detail()`` (e.g. the last serial-console line)."""
    global _depth
    indent = "  " * _depth
    log.info("%s%s", indent, text)
    start = time.monotonic()
    _depth += 1
    depth = _depth
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            if _depth != depth:  # a nested stage is open: it speaks instead
                continue
            extra = ""
            if detail is not None:
                try:
                    line = detail().strip().splitlines()
                except Exception:  # a heartbeat never fails the stage
                    line = []
                if line:
                    extra = f"; last console line: {escape(line[-1], 160)}"
            log.info("%s  ... still: %s (%.0fs)%s", indent, text, time.monotonic() - start, extra)

    thread = threading.Thread(target=beat, name="goldsmith-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    except BaseException:
        log.info("%s%s failed after %.1fs", indent, text, time.monotonic() - start)
        raise
    finally:
        stop.set()
        _depth -= 1
    log.info("%s%s done in %.1fs", indent, text, time.monotonic() - start)
