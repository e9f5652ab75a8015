"""How fast the block scan reads a template, next to sha256sum over the same raw disk.

Run from the repository root: .venv/bin/python tests/bench/blockscan.py ARTIFACT [--runs N]

The scan (validate/blockscan.py) decodes the artifact's qcow2, skips what is
not allocated, searches the build's needles and checks free blocks. For
comparison, ``qemu-img convert`` writes the same disk as a raw file (sparse,
in a temporary folder) and ``sha256sum`` reads all of it: the cost of merely
touching every byte of the virtual disk once. Throughput is in MiB of virtual
disk per second. Also shown: the decode alone, and the two ways of searching
many needles (one ``bytes.find`` per needle, one compiled ``re`` alternation)
over the decoded data. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from validate.blockscan import BlockScan, scan_image
from validate.diskimage import open_image
from validate.needles import NeedleSearch, needles_from_build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    disk = args.artifact / "disk.qcow2"
    record = json.loads((args.artifact / "build.json").read_text())
    needles, missing = needles_from_build(record["build_vm"])
    with open_image(disk) as image:
        virtual = image.virtual_size
        data = sum(end - start for start, end in image.extents())
    mib = virtual / (1 << 20)
    print(f"{disk}: {mib:.0f} MiB virtual, {data / (1 << 20):.0f} MiB allocated")
    print(f"{len(needles)} needles" + (f" (not recorded: {', '.join(missing)})" if missing else ""))

    def decode() -> int:
        with open_image(disk) as image:
            return sum(len(chunk) for _, chunk in image.stream())

    def find_each() -> int:
        search = NeedleSearch(needles)
        with open_image(disk) as image:
            for offset, chunk in image.stream():
                search.feed(offset, chunk)
        return search.count

    pattern = re.compile(b"|".join(re.escape(n.value) for n in needles))

    def alternation() -> int:
        with open_image(disk) as image:
            return sum(len(pattern.findall(chunk)) for _, chunk in image.stream())

    with tempfile.TemporaryDirectory(prefix="goldsmith-bench-") as tmp:
        raw = Path(tmp) / "disk.raw"
        start = time.perf_counter()
        subprocess.run(["qemu-img", "convert", "-O", "raw", disk, raw], check=True)
        converted = time.perf_counter() - start
        sha = ["sha256sum", str(raw)]
        subprocess.run(sha, check=True, capture_output=True)  # page cache warm
        scans: list[BlockScan] = []
        contenders: list[tuple[str, Callable[[], object]]] = [
            ("block scan (goldsmith validate)", lambda: scans.append(scan_image(disk, needles))),
            (
                "sha256sum of the raw disk",
                lambda: subprocess.run(sha, check=True, capture_output=True),
            ),
            ("  decode only", decode),
            ("  decode + bytes.find per needle", find_each),
        ]
        # Rounds interleave the contenders, so load from elsewhere falls on all alike.
        runs: dict[str, list[float]] = {name: [] for name, _ in contenders}
        for _ in range(args.runs):
            for name, fn in contenders:
                start = time.perf_counter()
                fn()
                runs[name].append(time.perf_counter() - start)
    start = time.perf_counter()
    alternation()
    rows = [(name, min(times)) for name, times in runs.items()]
    rows.append(("  decode + one re alternation (1 run)", time.perf_counter() - start))
    rows.append(("qemu-img convert to raw (sparse file)", converted))
    scan = scans[-1]
    print(f"\n{'':40} {'best s':>8} {'MiB/s of virtual disk':>22}")
    for name, secs in rows:
        print(f"{name:40} {secs:8.2f} {mib / secs:22.0f}")
    ratio = dict(rows)["sha256sum of the raw disk"] / dict(rows)["block scan (goldsmith validate)"]
    print(f"\nblock scan vs sha256sum: {ratio:.2f}x")
    print(f"hits: {scan.hit_count}; free blocks holding data: ", end="")
    print(", ".join(f"{fs.label} {fs.data_blocks}" for fs in scan.filesystems))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load}, best of {args.runs}")


if __name__ == "__main__":
    main()
