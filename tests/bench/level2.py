"""CIS level 2 in a guest: `goldsmith release` of templates/debian-12-cis-level2.yaml
with a throwaway signing key, then what the fresh boot proved.

    python tests/bench/level2.py [--out DIR] [--spec SPEC]

Prints the control results by status, every failing control with what was
expected and observed, every waiver with its reason, and the build and
validation stage times. Exits 1 when a control that is not waived failed (or
could not be checked), 2 when nothing was validated.

A bench target (make bench), not part of `make test`: a second CIS build under
TCG costs about 20 minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NOT_CONTROLS = frozenset({"hygiene", "user", "platform"})


def goldsmith(*args: str | Path) -> subprocess.CompletedProcess[str]:
    # Progress stays on stderr (the terminal or the caller's log); stdout is the result.
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )


def newest_artifact(out: Path, name: str) -> Path | None:
    """The artifact release just validated: its version may have been bumped."""
    runs = sorted(
        out.glob(f"{name}-*/validation.json"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    return runs[0].parent if runs else None


def controls_of(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in run["results"] if r["area"] not in NOT_CONTROLS]


def print_summary(artifact: Path, run: dict[str, Any], release_seconds: float) -> int:
    record = json.loads((artifact / "build.json").read_text(encoding="utf-8"))
    controls = controls_of(run)
    counts: dict[str, int] = {}
    for result in controls:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    others = [r for r in run["results"] if r["area"] in NOT_CONTROLS]
    bad_others = [r for r in others if r["status"] in ("failed", "error")]
    print(f"level-2 guest: {artifact.name}, profile {run['profile']['id']}")
    print(
        "controls: "
        + ", ".join(
            f"{counts.get(s, 0)} {s}" for s in ("passed", "failed", "error", "waived", "skipped")
        )
        + f" (of {len(controls)})"
    )
    print(f"hygiene, platform and user checks: {len(others)}, {len(bad_others)} failed")
    failing = [r for r in controls if r["status"] in ("failed", "error")] + bad_others
    for result in failing:
        print(f"  FAIL {result['id']} [{result['status']}]: {result['title']}")
        print(f"       expected: {result['expected']}")
        print(f"       observed: {result['observed'][:400]}")
    for result in controls:
        if result["status"] == "waived":
            print(f"  WAIVED {result['id']}: {result['reason']}")
    for result in controls:
        if result["status"] == "skipped":
            print(f"  SKIPPED {result['id']}: {result['reason']}")
    print("build stages:")
    for step in record.get("steps", []):
        print(f"  {step['name']:32} {step['seconds']:8.1f} s")
    print("validation stages:")
    for name, seconds in run.get("timings", {}).items():
        print(f"  {name:32} {seconds:8.1f} s")
    print(f"  {'release (whole command)':32} {release_seconds:8.1f} s")
    verdict = "approved" if not failing else "NOT approved"
    print(f"result: {verdict}, {len(failing)} non-waived failing")
    return 1 if failing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench")
    parser.add_argument("--spec", type=Path, default=REPO / "templates/debian-12-cis-level2.yaml")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    key = args.out / "level2-key"
    if not key.exists():
        made = goldsmith("keygen", key)
        if made.returncode != 0:
            return 2
    start = time.monotonic()
    released = goldsmith("release", args.spec, "--key", key, "--out", args.out, "--json")
    seconds = time.monotonic() - start
    print(f"goldsmith release exited {released.returncode} after {seconds:.0f} s")
    name = args.spec.stem
    try:
        name = json.loads(released.stdout)[0]["result"]["artifact"].rsplit("/", 1)[-1]
        name = name.rsplit("-", 1)[0]
    except (ValueError, LookupError, TypeError, AttributeError):
        pass  # a failed release prints an error, not a result: fall back to the spec's name
    artifact = newest_artifact(args.out, name)
    if artifact is None:
        print(released.stdout)
        print("no validation.json: the build failed before validation (see its .FAILED folder)")
        return 2
    run = json.loads((artifact / "validation.json").read_text(encoding="utf-8"))
    return print_summary(artifact, run, seconds)


if __name__ == "__main__":
    sys.exit(main())
