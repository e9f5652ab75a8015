"""Issue 17: sealing proven at the block level, on the sealed baseline's own image.

The clean case reads the validation the session already ran. The dirty case
costs no boot: a copy of the sealed disk gets a secret written into one free
ext4 block (what a deleted, never-overwritten file leaves), and goes through
check_disk_blocks, the very function `goldsmith validate` runs on an image.
"""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hardening.results import Status
from validate.blockscan import FREE_ZERO_ID, NEEDLES_ID, check_disk_blocks
from validate.diskimage import find_partitions, open_image
from validate.extfs import read_ext_fs
from validate.needles import secret_needles

pytestmark = pytest.mark.vm


def test_the_baseline_validation_includes_a_clean_block_scan(
    baseline_artifact: Path, baseline_validation: dict[str, Any]
) -> None:
    run = json.loads((baseline_artifact / "validation.json").read_text())
    by_id = {r["id"]: r for r in run["results"]}
    for check in (NEEDLES_ID, FREE_ZERO_ID, "HYG-10", "HYG-11"):
        assert by_id[check]["status"] == "passed", by_id[check]
    needles = by_id[NEEDLES_ID]["observed"]
    assert needles.startswith("0 hits in ") and "not recorded" not in needles
    for family in ("builder key", "build host key", "build machine-id", "seed instance id"):
        assert family in needles
    assert " 0 of " in by_id[FREE_ZERO_ID]["observed"]
    assert run["timings"]["blockscan"] > 0
    build_vm = json.loads((baseline_artifact / "build.json").read_text())["build_vm"]
    assert build_vm["host_key"].startswith("ssh-ed25519 ")
    assert build_vm["instance_id"].startswith("goldsmith-")


def test_a_secret_left_in_a_free_block_fails_by_name_never_by_value(
    baseline_artifact: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = tmp_path / "disk.raw"
    subprocess.run(
        ["qemu-img", "convert", "-O", "raw", baseline_artifact / "disk.qcow2", raw], check=True
    )
    with open_image(raw) as image:
        (part, *_), _ = find_partitions(image)
        fs = read_ext_fs(image, part.label, part.offset)
    assert fs is not None
    first, end = fs.free_runs[len(fs.free_runs) // 2]
    block = (first + end) // 2
    secret = secrets.token_urlsafe(32)
    with open(raw, "r+b") as f:
        f.seek(fs.offset + block * fs.block_size + 100)
        f.write(f"DEPLOY_TOKEN={secret}\n".encode())
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, disk], check=True)
    raw.unlink()

    record = json.loads((baseline_artifact / "build.json").read_text())
    with caplog.at_level(logging.DEBUG):
        results = {
            r.id: r for r in check_disk_blocks(disk, record, secret_needles("DEPLOY_TOKEN", secret))
        }

    needles, free = results[NEEDLES_ID], results[FREE_ZERO_ID]
    assert needles.status is Status.failed and free.status is Status.failed
    assert needles.observed.startswith("1 hit(s): host secret DEPLOY_TOKEN (raw) at 0x")
    assert needles.observed.endswith(f"({part.label} block {block} (free))")
    assert f"{part.label}: 1 of " in free.observed and f"(e.g. {block})" in free.observed
    shown = caplog.text + json.dumps([r.to_dict() for r in results.values()])
    assert secret not in shown and "host secret DEPLOY_TOKEN (raw)" in shown
