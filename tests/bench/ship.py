"""Figures for shipping a template: each output format's conversion time for a
sample image, and push/pull throughput of a ~200 MiB blob through goldsmith's
registry client against curl to the same registry (Debian's docker-registry on
127.0.0.1, plain HTTP, started here).

    python -m tests.bench.ship [--size-mib 200] [--disk-gib 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from builder.formats import Hardware, OutputFormat, file_name, make_outputs
from validate.registry import Descriptor, RegistryClient, parse_reference


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


def bench_registry(folder: Path, size_mib: int) -> None:
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
        digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
        size = blob.stat().st_size
        env = {"DOCKER_CONFIG": str(folder / "no-docker-config")}
        client = RegistryClient(
            parse_reference(f"127.0.0.1:{port}/bench/goldsmith:x"), plain_http=True, env=env
        )
        start = time.monotonic()
        client.push_blob(blob, digest, size, "blob")
        push = time.monotonic() - start
        start = time.monotonic()
        client.pull_blob(Descriptor("application/octet-stream", digest, size), folder / "g", "blob")
        pull = time.monotonic() - start

        # curl: one monolithic PUT of the whole file, then one GET.
        curl_blob = folder / "blob2"
        with open(curl_blob, "wb") as f:
            f.write(os.urandom(1 << 20))
            with open(blob, "rb") as src:
                shutil.copyfileobj(src, f)
        curl_digest = "sha256:" + hashlib.sha256(curl_blob.read_bytes()).hexdigest()
        curl_size = curl_blob.stat().st_size
        start = time.monotonic()
        location = subprocess.run(
            [
                "curl",
                "-sf",
                "-X",
                "POST",
                "-D",
                "-",
                "-o",
                "/dev/null",
                f"{base}/bench/curl/blobs/uploads/",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        url = next(
            line.split(":", 1)[1].strip()
            for line in location.splitlines()
            if line.lower().startswith("location:")
        )
        url += ("&" if "?" in url else "?") + f"digest={curl_digest}"
        subprocess.run(
            [
                "curl",
                "-sf",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "-T",
                str(curl_blob),
                url,
            ],
            check=True,
            capture_output=True,
        )
        curl_push = time.monotonic() - start
        start = time.monotonic()
        subprocess.run(
            ["curl", "-sf", "-o", str(folder / "g2"), f"{base}/bench/curl/blobs/{curl_digest}"],
            check=True,
        )
        curl_pull = time.monotonic() - start
        mib = size / (1 << 20)
        curl_mib = curl_size / (1 << 20)
        print(f"registry throughput, {mib:.0f} MiB blob, 127.0.0.1, plain HTTP:")
        print(f"  goldsmith push  {mib / push:7.1f} MiB/s  (32 MiB PATCH chunks)")
        print(f"  curl PUT        {curl_mib / curl_push:7.1f} MiB/s  (one monolithic PUT)")
        print(f"  goldsmith pull  {mib / pull:7.1f} MiB/s  (streamed, sha256 checked)")
        print(f"  curl GET        {curl_mib / curl_pull:7.1f} MiB/s  (no digest check)")
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--disk-gib", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="goldsmith-bench-ship-") as tmp:
        folder = Path(tmp)
        (folder / "formats").mkdir()
        bench_formats(folder / "formats", args.disk_gib)
        bench_registry(folder, args.size_mib)


if __name__ == "__main__":
    main()
