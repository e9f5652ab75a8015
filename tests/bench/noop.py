"""No-op rebuild: `goldsmith build` on a spec whose artifact already exists with
the same build key must boot nothing. Times the whole CLI call (process start,
spec and profile loading, apply-script rendering, build key) over several runs.

    python tests/bench/noop.py --out DIR [--spec SPEC] [--runs N]

Run it after a real build into DIR (make bench does). Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLDSMITH = Path(sys.executable).parent / "goldsmith"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--spec", type=Path, default=REPO / "templates/debian-12-baseline.yaml")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        start = time.monotonic()
        proc = subprocess.run(
            [GOLDSMITH, "build", str(args.spec), "--out", str(args.out), "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        times.append(time.monotonic() - start)
        if proc.returncode != 0 or not json.loads(proc.stdout).get("reused"):
            sys.exit(f"not a no-op rebuild (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    print(f"no-op rebuild benchmark: {args.spec.name}, {args.runs} runs")
    print(
        f"  median {statistics.median(times):6.2f} s   best {min(times):6.2f} s   "
        f"worst {max(times):6.2f} s   (target <= 2 s)"
    )


if __name__ == "__main__":
    main()
