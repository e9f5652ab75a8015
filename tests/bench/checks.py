"""Check-phase throughput: facts gathered in one command and evaluated locally,
against the naive way (at least one SSH round trip per check), in the same
boot of the same template. Boot time is reported separately, and the first
batched round (what validation runs: a fresh boot's cold caches) beside the
median of all rounds.

    python tests/bench/checks.py ARTIFACT_DIR [--profile P] [--rounds N]

A benchmark, not a test: it prints figures and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from builder.cloudinit import wait_script  # noqa: E402
from builder.log import setup_logging  # noqa: E402
from hardening.check import check_naive, evaluate, gather_facts  # noqa: E402
from hardening.profile import load_profile  # noqa: E402
from validate.boot import boot_artifact  # noqa: E402
from validate.host import pinned_host  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--profile", help="default: the profile the artifact was built with")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    setup_logging(logging.WARNING)
    record = json.loads((args.artifact / "build.json").read_text())
    profile = load_profile(args.profile or record["profile"]["source"])
    start = time.monotonic()
    with boot_artifact(args.artifact / "disk.qcow2") as guest:
        host = pinned_host(guest.client, guest.access.user)
        host.run(wait_script(900))
        boot = time.monotonic() - start
        batched: list[float] = []
        naive: list[float] = []
        with host.sudo():
            for _ in range(args.rounds):
                t = time.monotonic()
                fast = evaluate(profile, gather_facts(host, profile))
                batched.append(time.monotonic() - t)
                t = time.monotonic()
                slow = check_naive(host, profile)
                naive.append(time.monotonic() - t)
        same = [(a.id, a.status) for a in fast] == [(b.id, b.status) for b in slow]
    checks = len(fast)
    b, n = statistics.median(batched), statistics.median(naive)
    print(
        f"check-phase benchmark: {args.artifact.name}, profile {profile.id}, {checks} checks, "
        f"{guest.accelerator}, {args.rounds} rounds (median)"
    )
    print(f"  boot to SSH + cloud-init   {boot:8.1f} s   (not part of the check phase)")
    first = batched[0]
    print(f"  batched, first after boot  {first:8.2f} s   {checks / first:8.1f} checks/s")
    print(f"  batched (gather+evaluate)  {b:8.2f} s   {checks / b:8.1f} checks/s")
    print(f"  naive (one run per check)  {n:8.2f} s   {checks / n:8.1f} checks/s")
    print(f"  speed-up                   {n / b:8.1f} x")
    print(f"  same verdicts both ways    {same}")


if __name__ == "__main__":
    main()
