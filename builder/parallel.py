"""Several specs at once: each in its own goldsmith process.

A process per spec keeps builds apart: each has its own QEMU, SSH port, work
folder and signal handling, and a crash in one cannot corrupt another. The
shared base cache is safe across processes (locked, atomic entries).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_print_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ChildResult:
    spec: Path
    exit_code: int
    output: dict[str, Any] | None  # the child's --json output


def _run_one(command: str, spec: Path, extra: Sequence[str]) -> ChildResult:
    argv = [sys.executable, "-m", "builder.cli", command, str(spec), *extra, "--json"]
    # The child is goldsmith itself, so it inherits goldsmith's whole environment
    # (not builder.run's built one): it reads the same env_from_host secrets, key
    # passphrase, token PIN, cache and accelerator settings as this process would.
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:
        with _print_lock:
            print(f"[{spec.stem}] {line}", end="", file=sys.stderr, flush=True)
    stdout = proc.stdout.read()
    code = proc.wait()
    output = None
    try:
        # The child prints --json's one shape: a list holding its one entry.
        entries = json.loads(stdout) if stdout.strip() else None
        if isinstance(entries, list) and len(entries) == 1 and isinstance(entries[0], dict):
            result = entries[0].get("result")
            output = result if isinstance(result, dict) else None
    except ValueError:
        output = None
    return ChildResult(spec, code, output)


def run_parallel(
    command: str, specs: Sequence[Path], extra: Sequence[str], jobs: int
) -> list[ChildResult]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_run_one, command, spec, extra) for spec in specs]
        return [f.result() for f in futures]
