"""Issue: a sealed, bootable hardened template from a debootstrap base, end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder.cache import hash_file

pytestmark = pytest.mark.vm


def test_artifact_folder_is_complete(baseline_artifact: Path) -> None:
    names = {p.name for p in baseline_artifact.iterdir()}
    assert {"disk.qcow2", "build.json", "build.log", "serial.log"} <= names
    # Nothing of the build's private material travels with the artifact.
    assert "seed.iso" not in names and "overlay.qcow2" not in names
    assert not list(baseline_artifact.parent.glob(f".{baseline_artifact.name}.work-*"))


def test_template_is_standalone_and_compact(baseline_artifact: Path) -> None:
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(baseline_artifact / "disk.qcow2")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert "backing-filename" not in info
    record = json.loads((baseline_artifact / "build.json").read_text())
    assert info["virtual-size"] == record["image"]["virtual_size"] == 4 << 30
    # Compressed and trimmed: far below the virtual size.
    assert record["image"]["size"] < 1 << 30
    # zstd by default, as build.json says.
    assert info["format-specific"]["data"]["compression-type"] == "zstd"
    assert record["image"]["compression"] == "zstd"


def test_build_record(baseline_artifact: Path) -> None:
    record = json.loads((baseline_artifact / "build.json").read_text())
    assert record["schema"] == "https://goldsmith.dev/build/v1"
    assert record["template"] == {"name": "debian-12-baseline", "version": "1.0.0"}
    assert record["base"]["source"] == "debootstrap"
    assert len(record["base"]["digest"]["sha256"]) == 64
    assert record["profile"]["id"] == "baseline"
    assert record["profile"]["digest"].startswith("sha256:")
    assert record["accelerator"] in ("kvm", "tcg")
    digests = hash_file(baseline_artifact / "disk.qcow2", "sha256", "sha512")
    assert record["image"]["sha256"] == digests["sha256"]
    assert record["image"]["sha512"] == digests["sha512"]
    steps = {s["name"]: s for s in record["steps"]}
    for name in ("boot", "cloud-init", "upgrade", "harden", "seal", "compact"):
        assert steps[name]["status"] == "ok" and steps[name]["seconds"] >= 0
    vm = record["build_vm"]
    assert len(vm["machine_id"]) == 32
    assert vm["host_keys"]["ed25519"].startswith("SHA256:")
    assert vm["builder_key"].startswith("ssh-ed25519 ")
    sealed = " | ".join(record["sealed"])
    for item in (
        "builder key",
        "SSH host keys",
        "machine-id",
        "logs",
        "shell histories",
        "cloud-init",
        "builder account",
        "trimmed",
    ):
        assert item in sealed
    assert record["tools"]["qemu"]
