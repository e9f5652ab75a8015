"""Build benchmark: wall time of each stage and the sealed image's size against
its base. Run with `make bench` (or `python tests/bench/build.py --out DIR`).

A benchmark, not a test: it prints figures and asserts nothing about speed.
The base image's bootstrap is reported separately when it was not cached.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from builder.base import prepare_base  # noqa: E402
from builder.build import build_template  # noqa: E402
from builder.log import setup_logging  # noqa: E402
from builder.spec import load_spec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench")
    parser.add_argument("--spec", type=Path, default=REPO / "templates/debian-12-baseline.yaml")
    args = parser.parse_args()
    setup_logging(logging.WARNING)
    spec = load_spec(args.spec)
    start = time.monotonic()
    base = prepare_base(spec)
    base_seconds = time.monotonic() - start
    start = time.monotonic()
    artifact = build_template(args.spec, args.out, force=True).artifact
    total = time.monotonic() - start
    record = json.loads((artifact / "build.json").read_text())
    print(f"goldsmith build benchmark: {spec.name} {spec.version} ({record['accelerator']})")
    print(f"  {'base image (prepare/cached)':32} {base_seconds:8.1f} s")
    for step in record["steps"]:
        print(f"  {step['name']:32} {step['seconds']:8.1f} s")
    print(f"  {'total build':32} {total:8.1f} s")
    base_size = base.path.stat().st_size
    image_size = record["image"]["size"]
    print(f"  base image   {base_size / 2**20:8.1f} MiB ({base.format}, {base.path.name})")
    print(f"  sealed image {image_size / 2**20:8.1f} MiB (qcow2, compressed)")
    print(f"  ratio        {image_size / base_size:8.2f}")
    print(f"  virtual size {record['image']['virtual_size'] / 2**30:8.1f} GiB")


if __name__ == "__main__":
    main()
