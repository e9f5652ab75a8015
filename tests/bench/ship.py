"""Figures for shipping a template: each output format's conversion time for a
sample image, and push/pull throughput of a ~200 MiB blob through goldsmith's
registry client against curl to the same registry (Debian's docker-registry on
127.0.0.1, plain HTTP, started here).

    python -m tests.bench.ship [--size-mib 200] [--disk-gib 2] [--rounds 5] [--skip-formats]

The machine may be busy: each round times goldsmith and curl back to back,
and two ratios are printed, of the best rounds and the median of the rounds'
ratios, with the CPU time each client used (less sensitive to other load).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from builder.cache import hash_file
from builder.formats import Hardware, OutputFormat, file_name, make_outputs
from validate.oci_manifest import Descriptor
from validate.oci_reference import parse_reference
from validate.registry import RegistryClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def sample_disk(folder: Path, disk_gib: int, data_mib: int) -> Path:
    """A compressed qcow2 of ``disk_gib`` with ``data_mib`` of random data spread over it."""
    raw = folder / "sample.raw"
    with open(raw, "wb") as f:
        f.truncate(disk_gib << 30)
        step = (disk_gib << 30) // data_mib
        for i in range(data_mib):
            f.seek(i * step)
            f.write(os.urandom(1 << 20))
    disk = folder / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", "-c", str(raw), str(disk)],
        check=True,
    )
    raw.unlink()
    return disk


def bench_formats(folder: Path, disk_gib: int) -> None:
    disk = sample_disk(folder, disk_gib, 128)
    print(
        f"conversion of a {disk_gib} GiB qcow2 holding 128 MiB of data "
        f"({disk.stat().st_size >> 20} MiB file):"
    )
    hardware = Hardware("bench", "1", cpus=2, memory=2048)
    for fmt in OutputFormat:
        if fmt is OutputFormat.qcow2:
            continue
        start = time.monotonic()
        make_outputs(disk, [fmt], hardware)  # includes hashing the output (sha256 + sha512)
        seconds = time.monotonic() - start
        size = (folder / file_name(fmt)).stat().st_size
        print(f"  {fmt:5}  {seconds:6.2f} s  {size >> 20:6d} MiB on disk")
        (folder / file_name(fmt)).unlink()


def refresh(blob: Path) -> str:
    """Give ``blob`` new first bytes (so no registry has it yet); its digest."""
    with open(blob, "r+b") as f:
        f.write(os.urandom(64))
    return "sha256:" + hash_file(blob)["sha256"]


def curl_push(base: str, repo: str, blob: Path, digest: str) -> None:
    """curl: POST for an upload location, then one monolithic PUT of the file."""
    start = ["curl", "-sf", "-X", "POST", "-D", "-", "-o", "/dev/null"]
    headers = subprocess.run(
        [*start, f"{base}/{repo}/blobs/uploads/"], capture_output=True, text=True, check=True
    ).stdout
    url = next(
        line.split(":", 1)[1].strip()
        for line in headers.splitlines()
        if line.lower().startswith("location:")
    )
    url += ("&" if "?" in url else "?") + f"digest={digest}"
    put = ["curl", "-sf", "-X", "PUT", "-H", "Content-Type: application/octet-stream"]
    subprocess.run([*put, "-T", str(blob), url], check=True, capture_output=True)


def curl_pull(url: str, target: Path) -> None:
    subprocess.run(["curl", "-sf", "-o", str(target), url], check=True)


Timed = tuple[str, Callable[..., object], tuple[object, ...]]


def timed(action: Callable[..., object], *args: object) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of this process (all its threads) and of
    the children it waited for (curl)."""

    def cpu() -> float:
        return sum(
            usage.ru_utime + usage.ru_stime
            for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        )

    start, start_cpu = time.monotonic(), cpu()
    action(*args)
    return time.monotonic() - start, cpu() - start_cpu


def bench_registry(folder: Path, size_mib: int, rounds: int) -> None:
    registry = shutil.which("docker-registry")
    if registry is None:
        sys.exit("docker-registry is not installed")
    port = free_port()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {folder / 'storage'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    process = subprocess.Popen(
        [registry, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}/v2"
        for _ in range(200):
            if subprocess.run(["curl", "-sf", f"{base}/"], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        blob = folder / "blob"
        with open(blob, "wb") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
        size = blob.stat().st_size
        curl_blob = folder / "curl-blob"
        shutil.copyfile(blob, curl_blob)
        env = {"DOCKER_CONFIG": str(folder / "no-docker-config")}
        client = RegistryClient(
            parse_reference(f"127.0.0.1:{port}/bench/goldsmith:x"), plain_http=True, env=env
        )
        # Each round times goldsmith and curl back to back, each on a blob new
        # to the registry, the one going first alternating, so that each
        # ratio compares like with like on a machine whose load changes from
        # second to second.
        times: dict[str, list[float]] = {"push": [], "curl push": [], "pull": [], "curl pull": []}
        cpu: dict[str, list[float]] = {name: [] for name in times}
        pulled = folder / "pulled"
        for round_ in range(rounds):
            digest, curl_digest = refresh(blob), refresh(curl_blob)
            descriptor = Descriptor("application/octet-stream", digest, size)
            url = f"{base}/bench/curl/blobs/{curl_digest}"
            pairs: list[tuple[Timed, Timed]] = [
                (
                    ("push", client.push_blob, (blob, digest, size, "blob")),
                    ("curl push", curl_push, (base, "bench/curl", curl_blob, curl_digest)),
                ),
                (
                    ("pull", client.pull_blob, (descriptor, pulled, "blob")),
                    ("curl pull", curl_pull, (url, pulled)),
                ),
            ]
            for pair in pairs:
                for name, action, args in pair[:: 1 if round_ % 2 == 0 else -1]:
                    seconds, cpu_seconds = timed(action, *args)
                    times[name].append(seconds)
                    cpu[name].append(cpu_seconds)
                    pulled.unlink(missing_ok=True)
        mib = size / (1 << 20)
        print(
            f"registry throughput, {mib:.0f} MiB blob, 127.0.0.1, plain HTTP, {rounds} rounds "
            "(best MiB/s, median client CPU):"
        )
        what = {
            "push": "goldsmith push  ",
            "curl push": "curl PUT        ",
            "pull": "goldsmith pull  ",
            "curl pull": "curl GET        ",
        }
        how = {
            "push": "one streamed monolithic PUT",
            "curl push": "one monolithic PUT",
            "pull": "streamed, sha256 checked",
            "curl pull": "no digest check",
        }
        for name, values in times.items():
            print(
                f"  {what[name]}{mib / min(values):7.1f} MiB/s  "
                f"{statistics.median(cpu[name]):5.2f} s CPU  ({how[name]})"
            )
        for verb in ("push", "pull"):
            ratios = [c / g for g, c in zip(times[verb], times[f"curl {verb}"], strict=True)]
            best = min(times[f"curl {verb}"]) / min(times[verb])
            print(
                f"  {verb} goldsmith/curl  {best:.2f}x best, {statistics.median(ratios):.2f}x "
                f"median of rounds ({' '.join(f'{r:.2f}' for r in ratios)})"
            )
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--disk-gib", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-formats", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="goldsmith-bench-ship-") as tmp:
        folder = Path(tmp)
        if not args.skip_formats:
            (folder / "formats").mkdir()
            bench_formats(folder / "formats", args.disk_gib)
        bench_registry(folder, args.size_mib, args.rounds)


if __name__ == "__main__":
    main()
