"""Issue 12: firmware and releases. One template built for Debian 13 with UEFI
Secure Boot and a TPM, released (build, validate, sign), and proven: Secure
Boot enabled and enforcing and measured boot in a fresh boot, recorded in the
signed statement, required by a policy that refuses the BIOS baseline.

One build only (CI time): the shipped templates/debian-13-cis-level1.yaml
would add CIS's package work under TCG, so the same release with the
baseline profile is built from a copy of it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, goldsmith, only_result, require_vm_tools

pytestmark = pytest.mark.vm

SPEC = REPO / "templates/debian-13-cis-level1.yaml"
FIRMWARE_TOOLS = ("swtpm", "mkfs.vfat")
OVMF = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")


def require_firmware_tools() -> None:
    require_vm_tools()
    missing = [tool for tool in FIRMWARE_TOOLS if shutil.which(tool) is None]
    if not OVMF.is_file():
        missing.append("ovmf")
    if missing:
        message = f"firmware tools missing: {', '.join(missing)} (run `make deps`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def secureboot_spec(e2e_out: Path) -> Path:
    """The shipped Debian 13 Secure Boot template, with the baseline profile."""
    text = SPEC.read_text()
    assert "firmware: uefi-secureboot" in text and "tpm: true" in text
    spec = e2e_out / "debian-13-secureboot.yaml"
    spec.write_text(
        text.replace("name: debian-13-cis-level1", "name: debian-13-secureboot").replace(
            "profile: cis-level1-server", "profile: baseline"
        )
    )
    return spec


@pytest.fixture(scope="module")
def secureboot_release(
    secureboot_spec: Path, e2e_out: Path, signing_key: Path, goldsmith_json: Callable[..., Any]
) -> dict[str, Any]:
    require_firmware_tools()
    entries = goldsmith_json(
        "release",
        secureboot_spec,
        "--key",
        signing_key,
        "--out",
        e2e_out,
        "--json",
        timeout=5400,
    )
    return only_result(entries)


@pytest.fixture(scope="module")
def secureboot_artifact(secureboot_release: dict[str, Any]) -> Path:
    return Path(secureboot_release["artifact"])


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def test_the_build_vm_booted_secure_boot_with_a_tpm(secureboot_artifact: Path) -> None:
    record = read_json(secureboot_artifact / "build.json")
    firmware = record["firmware"]
    assert firmware["type"] == "uefi-secureboot" and firmware["tpm"] is True
    assert firmware["ovmf"]["code"]["path"].endswith("OVMF_CODE_4M.secboot.fd")
    observed = firmware["observed"]
    assert observed["efi"] is True
    assert observed["secure_boot"] == "enabled and enforcing"
    # Debian's kernel locks itself down when Secure Boot verified it.
    assert observed["lockdown"] in ("integrity", "confidentiality")
    assert observed["tpm"] is True and observed["tpm_version"] == "2"
    assert set(observed["pcrs_sha256"]["0"]) - {"0", "f"}
    assert record["base"]["inputs"]["suite"] == "trixie"
    assert record["base"]["inputs"]["firmware"] == "uefi-secureboot"
    boot = next(step for step in record["steps"] if step["name"] == "boot")
    assert boot["status"] == "ok" and boot["seconds"] > 0


def test_validation_proves_secure_boot_and_measured_boot(secureboot_artifact: Path) -> None:
    run = read_json(secureboot_artifact / "validation.json")
    by_id = {r["id"]: r for r in run["results"]}
    for check in ("PLAT-FIRMWARE", "PLAT-SECUREBOOT", "PLAT-TPM", "PLAT-PCRS"):
        assert by_id[check]["status"] == "passed", by_id[check]
    assert by_id["PLAT-SECUREBOOT"]["observed"].startswith("Secure Boot enabled and enforcing")
    # Every control ran on trixie: none errored, none silently missing.
    profile_controls = [r for r in run["results"] if r["area"] not in ("hygiene", "user")]
    assert all(r["status"] != "error" for r in profile_controls), [
        r for r in profile_controls if r["status"] == "error"
    ]
    assert run["approved"] is True


def test_the_template_carries_the_signed_boot_chain(secureboot_artifact: Path) -> None:
    run = read_json(secureboot_artifact / "validation.json")
    packages = {p["name"] for p in run["packages"]}
    assert {"shim-signed", "grub-efi-amd64-signed", "linux-image-cloud-amd64"} <= packages
    assert "grub-pc" not in packages


def write_policy(folder: Path, text: str) -> Path:
    policy = folder / "policy.yaml"
    policy.write_text(text)
    return policy


def test_a_secure_boot_policy_trusts_the_template(
    secureboot_artifact: Path, signing_key: Path, tmp_path: Path, goldsmith_json: Callable[..., Any]
) -> None:
    statement = secureboot_artifact / "manifest.dsse.json"
    envelope = read_json(statement)
    payload = json.loads(base64.b64decode(envelope["payload"]))
    assert payload["predicate"]["platform"] == {
        "firmware": "uefi-secureboot",
        "secureBoot": {"required": True, "verified": True},
        "tpm": {"required": True, "verified": True, "measuredBoot": True},
    }
    policy = write_policy(tmp_path, "require_firmware: uefi-secureboot\nrequire_tpm: true\n")
    verdict = goldsmith_json(
        "verify", secureboot_artifact, "--key", f"{signing_key}.pub", "--policy", policy, "--json"
    )
    assert verdict["trusted"] is True


def test_a_secure_boot_policy_refuses_the_bios_baseline(
    baseline_artifact: Path, baseline_release: dict[str, Any], signing_key: Path, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, "require_firmware: uefi-secureboot\n")
    proc = goldsmith("verify", baseline_artifact, "--key", f"{signing_key}.pub", "--policy", policy)
    assert proc.returncode == 1, proc.stderr
    assert "built for firmware bios" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    tpm = write_policy(tmp_path, "require_tpm: true\n")
    proc = goldsmith("verify", baseline_artifact, "--key", f"{signing_key}.pub", "--policy", tpm)
    assert proc.returncode == 1 and "PLAT-TPM" in proc.stderr + proc.stdout
