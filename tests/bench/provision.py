"""Provisioning benchmark: the webserver example built with its provisioning
steps and, in the same run, the same spec without them; prints each step's
time, the time per step kind, and the two builds' totals and stages.

Run with `make bench` (or `python tests/bench/provision.py --out DIR`). The
example's apt step needs its company repository: the benchmark makes and
serves a signed one on the host's loopback, as the end-to-end tests do, and
gives the registration step a throwaway token. A benchmark, not a test: it
asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import re
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests/e2e"))

import aptrepo  # noqa: E402

from builder.build import build_template  # noqa: E402
from builder.log import setup_logging  # noqa: E402

EXAMPLE_URI = "http://10.0.2.2:8765/example-tools"


def _prepare(out: Path, port: int, repo: Path) -> tuple[Path, Path]:
    """The example copied beside the results, and the same spec without provisioning."""
    source = out / "webserver-src"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(REPO / "examples/webserver", source)
    (source / "keys").mkdir(exist_ok=True)
    shutil.copy(repo / "key.asc", source / "keys/example-tools.asc")
    spec = source / "webserver.yaml"
    text = spec.read_text().replace(EXAMPLE_URI, f"http://{aptrepo.GUEST_HOST}:{port}/repo")
    spec.write_text(text)
    # Everything from `provision:` on goes; the name changes so both artifacts coexist.
    bare_text = re.split(r"^provision:", text, flags=re.MULTILINE)[0]
    bare_text = bare_text.replace("name: example-webserver", "name: example-webserver-bare")
    bare = source / "webserver-bare.yaml"
    bare.write_text(bare_text)
    return spec, bare


def _build(spec: Path, out: Path) -> tuple[float, dict[str, Any]]:
    start = time.monotonic()
    artifact = build_template(spec, out, force=True).artifact
    seconds = time.monotonic() - start
    return seconds, json.loads((artifact / "build.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    setup_logging(logging.WARNING)
    repo = out / "webserver-repo"
    if not (repo / "key.asc").is_file():
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir(parents=True)
        aptrepo.make_repo(repo)
    os.environ.setdefault("EXAMPLE_REGISTRATION_TOKEN", "bench-" + secrets.token_hex(16))
    with aptrepo.serve(repo) as port:
        spec, bare = _prepare(out, port, repo)
        with_total, with_record = _build(spec, out)
        bare_total, bare_record = _build(bare, out)
    print(f"goldsmith provisioning benchmark: examples/webserver ({with_record['accelerator']})")
    print("  each step:")
    per_kind: dict[str, list[float]] = collections.defaultdict(list)
    for step in with_record["provision"]:
        per_kind[step["kind"]].append(step["seconds"])
        label = f"[{step['index']}] {step['kind']} ({step['name']})"
        print(f"    {label:52} {step['seconds']:8.1f} s")
    print("  per step kind:")
    for kind, times in sorted(per_kind.items()):
        print(f"    {kind:10} {len(times)} step(s) {sum(times):8.1f} s")
    print("  stages            with provisioning   without")
    bare_stages = {s["name"]: s["seconds"] for s in bare_record["steps"]}
    for stage in with_record["steps"]:
        other = bare_stages.get(stage["name"])
        shown = f"{other:8.1f} s" if other is not None else "       -"
        print(f"    {stage['name']:16} {stage['seconds']:8.1f} s          {shown}")
    print(f"  total build       {with_total:8.1f} s          {bare_total:8.1f} s")
    print(f"  provisioning adds {with_total - bare_total:8.1f} s ({with_total / bare_total:.2f}x)")


if __name__ == "__main__":
    main()
