"""The Packer comparison's template (tests/bench/packer.py), without a VM:
what it gives Packer, that the guest's work is goldsmith's own, and that
`packer validate` (which boots nothing) accepts it."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder import qemu_command
from builder.build import BUILDER_USER, plan_build
from builder.firmware import Firmware
from builder.seal import render_seal_script, sealing_plan
from builder.seed import GuestAccess, new_access
from builder.spec import TemplateSpec, load_spec

# The bench scripts are files, not a package: mypy names this one "packer"
# (as it does tests/unit/builder/paramiko_server.py), so it is imported so.
sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))
import packer as bench


@pytest.fixture(scope="module")
def spec() -> TemplateSpec:
    return load_spec(bench.TEMPLATES["baseline"])


@pytest.fixture(scope="module")
def access() -> GuestAccess:
    return new_access(BUILDER_USER, "packer")


@pytest.fixture
def inputs(tmp_path: Path, spec: TemplateSpec, access: GuestAccess) -> bench.PackerInputs:
    base = tmp_path / "base.qcow2"
    base.write_bytes(b"")  # packer validate does not open it
    _, script, _ = plan_build(spec)
    return bench.write_inputs(
        tmp_path / "work", spec, base, "qcow2", qemu_command.Accelerator.tcg, script, access
    )


def read_template(inputs: bench.PackerInputs) -> dict[str, object]:
    loaded = json.loads((inputs.output_dir.parent / "template.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_builder_overlays_goldsmiths_base_and_compresses(inputs: bench.PackerInputs) -> None:
    (builder,) = bench.render_template(inputs)["builders"]
    assert builder["type"] == "qemu"
    assert builder["iso_url"] == str(inputs.base)
    # An overlay: Packer never writes goldsmith's cached base.
    assert builder["disk_image"] is True
    assert builder["use_backing_file"] is True
    assert builder["qemu_img_args"] == {"create": ["-F", "qcow2"]}
    assert builder["disk_compression"] is True
    assert builder["format"] == "qcow2"
    assert builder["disk_size"] == "4096M"
    assert builder["accelerator"] == "tcg"
    assert builder["machine_type"] == "pc"  # SeaBIOS on i440fx, as goldsmith's build VM
    assert builder["headless"] is True
    assert (builder["memory"], builder["cpus"]) == (2048, 2)
    assert (builder["disk_cache"], builder["disk_discard"]) == ("unsafe", "unmap")


def test_the_guest_is_reached_with_the_seeds_key_on_loopback(
    inputs: bench.PackerInputs, access: GuestAccess
) -> None:
    (builder,) = bench.render_template(inputs)["builders"]
    assert builder["communicator"] == "ssh"
    assert builder["ssh_username"] == BUILDER_USER
    assert Path(builder["ssh_private_key_file"]).read_text() == access.client_key.private_openssh
    args = {arg[0]: arg[1] for arg in builder["qemuargs"]}
    assert args["-cdrom"] == str(inputs.seed)
    assert "hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22" in args["-netdev"]
    # A -drive would replace Packer's own drives, the disk among them.
    assert "-drive" not in args


def test_the_guest_does_goldsmiths_work(
    inputs: bench.PackerInputs, spec: TemplateSpec, access: GuestAccess
) -> None:
    template = bench.render_template(inputs)
    upload, shell = template["provisioners"]
    assert upload == {
        "type": "file",
        "source": str(inputs.seal_script),
        "destination": bench.REMOTE_SEAL,
    }
    assert [Path(p).name for p in shell["scripts"]] == ["cloud-init.sh", "upgrade.sh", "harden.sh"]
    assert shell["execute_command"].startswith("sudo -n -- bash -euo pipefail ")
    _, script, _ = plan_build(spec)
    assert Path(shell["scripts"][2]).read_text() == script
    assert "dist-upgrade" in Path(shell["scripts"][1]).read_text()
    # The seal is goldsmith's own, run as the shutdown command so that Packer
    # waits for the guest's own power-off; its tail powers off at once, since
    # Packer keeps its connection open and ignores the exit status.
    plan = sealing_plan(BUILDER_USER, access.client_key.blob)
    seal = render_seal_script(plan, poweroff="systemctl poweroff --no-block")
    assert inputs.seal_script.read_text() == seal
    items = render_seal_script(plan).splitlines()[:-1]
    assert seal.splitlines()[:-1] == items  # the same seal, only the tail differs
    assert template["builders"][0]["shutdown_command"].endswith(bench.REMOTE_SEAL)


def test_template_file_is_the_rendered_json(inputs: bench.PackerInputs) -> None:
    assert read_template(inputs) == json.loads(json.dumps(bench.render_template(inputs)))


def test_packer_validate_accepts_the_template(inputs: bench.PackerInputs) -> None:
    if shutil.which("packer") is None:
        if os.environ.get("CI"):
            pytest.fail("packer is not installed (apt-get install packer)")
        pytest.skip("packer is not installed")
    work = inputs.output_dir.parent
    done = subprocess.run(
        ["packer", "validate", str(work / "template.json")],
        env=bench.packer_env(work),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_uefi_tpm_and_provisioning_are_refused(spec: TemplateSpec) -> None:
    for changed in (
        dataclasses.replace(spec, firmware=Firmware.uefi),
        dataclasses.replace(spec, tpm=True),
    ):
        with pytest.raises(bench.BenchError):
            bench.check_supported(changed)
    bench.check_supported(spec)


def test_packer_stages_follow_its_output_lines() -> None:
    events = [
        (0.5, "==> qemu: Starting VM, booting disk image"),
        (40.0, "==> qemu: Connected to SSH!"),
        (41.0, "==> qemu: Provisioning with shell script: /w/cloud-init.sh"),
        (45.0, "==> qemu: Provisioning with shell script: /w/upgrade.sh"),
        (70.0, "==> qemu: Provisioning with shell script: /w/harden.sh"),
        (75.0, "==> qemu: Gracefully halting virtual machine..."),
        (76.0, "    qemu: goldsmith-sealed: timers stopped"),
        (80.0, "    qemu: goldsmith-sealed: free space"),
        (83.0, "==> qemu: Converting hard drive..."),
        (98.0, "Build 'qemu' finished after 1 minute 38 seconds."),
    ]
    assert bench.packer_stages(events, 98.5) == {
        "prepare": 0.5,
        "boot": 39.5,
        "upload": 1.0,
        "cloud-init": 4.0,
        "upgrade": 25.0,
        "harden": 5.0,
        "seal": 5.0,
        "shutdown": 3.0,
        "compact": 15.0,
        "finish": 0.5,
    }


def test_report_has_each_run_medians_and_ratios() -> None:
    runs = [
        bench.Run("packer", 1, 90.0, True, {"boot": 40.0}),
        bench.Run("build", 1, 99.0, True, {"boot": 34.0}),
        bench.Run("release", 1, 135.0, True, {"boot": 34.0, "validate boot": 30.0}),
        bench.Run("packer", 2, 100.0, True, {"boot": 41.0}),
        bench.Run("build", 2, 0.0, False, {}, note="exit 1"),
        bench.Run("release", 2, 145.0, True, {"boot": 35.0}),
    ]
    text = "\n".join(bench.report(runs, "header"))
    assert "goldsmith build / packer build: 1.04" in text  # 99 / 95: the failed run left out
    assert "goldsmith release / packer build: 1.47" in text  # 140 / 95
    assert "FAILED" in text
    assert "round 2 goldsmith build [FAILED: exit 1]" in text
