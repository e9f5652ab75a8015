"""Firmware, Secure Boot and the TPM in the signed statement, and the policy
keys that require them (require_firmware, require_tpm)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from test_manifest import GOOD_RESULTS, NOW, make_artifact, make_key, read_statement

from builder.errors import InputError
from hardening.results import CheckResult, Status
from validate.claims import VerificationError
from validate.dsse import PAYLOAD_TYPE_IN_TOTO, sign_envelope
from validate.keys import load_private_key
from validate.manifest import BuildRecord, encode_statement, sign_artifact
from validate.policy import Policy
from validate.verify import verify_artifact

LATER = NOW + datetime.timedelta(days=1)


def platform_results(secure_boot: Status, tpm: Status, pcrs: Status) -> tuple[CheckResult, ...]:
    return (
        CheckResult("PLAT-FIRMWARE", "firmware", "platform", Status.passed, "UEFI", "UEFI"),
        CheckResult("PLAT-SECUREBOOT", "sb", "platform", secure_boot, "enforcing", "x"),
        CheckResult("PLAT-TPM", "tpm", "platform", tpm, "TPM 2.0", "x"),
        CheckResult("PLAT-PCRS", "pcrs", "platform", pcrs, "PCR 0", "x"),
    )


def signed_artifact(
    tmp_path: Path,
    firmware: dict[str, Any] | None,
    results: tuple[CheckResult, ...] = (),
) -> tuple[Path, Path]:
    artifact = make_artifact(tmp_path, (*GOOD_RESULTS, *results))
    if firmware is not None:
        record = json.loads((artifact / "build.json").read_text())
        record["firmware"] = firmware
        (artifact / "build.json").write_text(json.dumps(record))
    key = make_key(tmp_path)
    sign_artifact(artifact, key, now=NOW)
    return artifact, key


def verify(artifact: Path, key: Path, **policy: Any) -> Any:
    return verify_artifact(
        artifact, keys=[key.with_name(key.name + ".pub")], now=LATER, policy=Policy(**policy)
    )


SECURE = {"type": "uefi-secureboot", "tpm": True}
PROVEN = platform_results(Status.passed, Status.passed, Status.passed)


def test_the_statement_records_the_firmware_and_what_validation_proved(tmp_path: Path) -> None:
    artifact, _ = signed_artifact(tmp_path, SECURE, PROVEN)
    platform = read_statement(artifact / "manifest.dsse.json")["predicate"]["platform"]
    assert platform == {
        "firmware": "uefi-secureboot",
        "secureBoot": {"required": True, "verified": True},
        "tpm": {"required": True, "verified": True, "measuredBoot": True},
    }


def test_a_bios_record_says_so_and_proves_nothing_else(tmp_path: Path) -> None:
    artifact, _ = signed_artifact(tmp_path, None)
    platform = read_statement(artifact / "manifest.dsse.json")["predicate"]["platform"]
    assert platform == {
        "firmware": "bios",
        "secureBoot": {"required": False, "verified": False},
        "tpm": {"required": False, "verified": False, "measuredBoot": False},
    }


def test_a_secure_boot_template_meets_every_firmware_policy_it_should(tmp_path: Path) -> None:
    artifact, key = signed_artifact(tmp_path, SECURE, PROVEN)
    for firmware in ("uefi-secureboot", "uefi"):
        verdict = verify(artifact, key, require_firmware=firmware, require_tpm=True)
        assert verdict.claims.platform.firmware == "uefi-secureboot"
    with pytest.raises(VerificationError, match="built for firmware uefi-secureboot"):
        verify(artifact, key, require_firmware="bios")


def test_a_bios_template_is_refused_by_a_secure_boot_policy(tmp_path: Path) -> None:
    artifact, key = signed_artifact(tmp_path, {"type": "bios", "tpm": False})
    with pytest.raises(
        VerificationError,
        match=r"built for firmware bios; the policy requires firmware uefi-secureboot",
    ):
        verify(artifact, key, require_firmware="uefi-secureboot")
    with pytest.raises(VerificationError, match=r"did not prove a TPM 2\.0"):
        verify(artifact, key, require_tpm=True)
    verify(artifact, key, require_firmware="bios")


def test_secure_boot_built_for_but_not_proven_is_refused(tmp_path: Path) -> None:
    # A waived Secure Boot check signs as approved, but proves nothing.
    results = platform_results(Status.waived, Status.passed, Status.skipped)
    artifact, key = signed_artifact(tmp_path, SECURE, results)
    with pytest.raises(VerificationError, match=r"did not prove Secure Boot.*PLAT-SECUREBOOT"):
        verify(artifact, key, require_firmware="uefi-secureboot")
    with pytest.raises(VerificationError, match=r"did not prove measured boot \(PLAT-PCRS\)"):
        verify(artifact, key, require_tpm=True)


def test_a_summary_that_disagrees_with_the_signed_check_is_not_enough(tmp_path: Path) -> None:
    results = platform_results(Status.skipped, Status.skipped, Status.skipped)
    artifact, key = signed_artifact(tmp_path, SECURE, results)
    manifest = artifact / "manifest.dsse.json"
    statement = read_statement(manifest)
    statement["predicate"]["platform"]["secureBoot"]["verified"] = True
    envelope = sign_envelope(
        PAYLOAD_TYPE_IN_TOTO, encode_statement(statement), [load_private_key(key)]
    )
    manifest.write_bytes(envelope.to_json())
    with pytest.raises(VerificationError, match="PLAT-SECUREBOOT"):
        verify(artifact, key, require_firmware="uefi-secureboot")


def test_a_manifest_from_before_firmware_was_recorded(tmp_path: Path) -> None:
    artifact, key = signed_artifact(tmp_path, None)
    manifest = artifact / "manifest.dsse.json"
    statement = read_statement(manifest)
    del statement["predicate"]["platform"]
    envelope = sign_envelope(
        PAYLOAD_TYPE_IN_TOTO, encode_statement(statement), [load_private_key(key)]
    )
    manifest.write_bytes(envelope.to_json())
    assert verify(artifact, key).claims.platform is None
    with pytest.raises(VerificationError, match="records no firmware or TPM"):
        verify(artifact, key, require_tpm=True)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ({"firmware": "efi"}, "platform.firmware"),
        ({"firmware": 1}, "platform.firmware"),
        ({"tpm": {"verified": "yes", "measuredBoot": True}}, "platform.tpm.verified"),
        ({"secureBoot": None}, "platform.secureBoot.verified"),
    ],
)
def test_a_malformed_platform_is_not_trusted(tmp_path: Path, edit: Any, field: str) -> None:
    artifact, key = signed_artifact(tmp_path, SECURE, PROVEN)
    manifest = artifact / "manifest.dsse.json"
    statement = read_statement(manifest)
    statement["predicate"]["platform"].update(edit)
    envelope = sign_envelope(
        PAYLOAD_TYPE_IN_TOTO, encode_statement(statement), [load_private_key(key)]
    )
    manifest.write_bytes(envelope.to_json())
    with pytest.raises(VerificationError, match=field.replace(".", r"\.")):
        verify(artifact, key)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("require_firmware: efi\n", "require_firmware"),
        ("require_firmware: [uefi]\n", "require_firmware"),
        ("require_tpm: yes-please\n", "require_tpm"),
        ("require_tpm: 1\n", "require_tpm"),
        ("requires_tpm: true\n", "requires_tpm"),
    ],
)
def test_bad_policy_values_are_bad_input(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        Policy.load(path)
    assert info.value.field == field and info.value.exit_code == 2


def test_the_policy_file_reads_both_keys(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("require_firmware: uefi-secureboot\nrequire_tpm: true\n")
    policy = Policy.load(path)
    assert policy.require_firmware == "uefi-secureboot" and policy.require_tpm is True


@pytest.mark.parametrize(
    ("firmware", "field"),
    [
        ("uefi", "firmware"),
        ({"type": "efi"}, "firmware.type"),
        ({"type": "uefi", "tpm": 1}, "firmware.tpm"),
    ],
)
def test_a_bad_build_record_firmware_is_bad_input(
    tmp_path: Path, firmware: Any, field: str
) -> None:
    artifact = make_artifact(tmp_path)
    record = json.loads((artifact / "build.json").read_text())
    record["firmware"] = firmware
    with pytest.raises(InputError) as info:
        BuildRecord.from_dict(record, artifact / "build.json")
    assert info.value.field == field


def test_the_verdict_shows_the_platform(tmp_path: Path) -> None:
    artifact, key = signed_artifact(tmp_path, SECURE, PROVEN)
    verdict = verify(artifact, key)
    assert verdict.to_dict()["platform"] == {
        "firmware": "uefi-secureboot",
        "secureBootVerified": True,
        "tpmVerified": True,
        "measuredBoot": True,
    }
    assert (
        "  platform:  uefi-secureboot; proven in validation: Secure Boot, TPM 2.0, measured boot"
        in verdict.describe().splitlines()
    )


def test_a_bios_verdict_stays_as_it_was(tmp_path: Path) -> None:
    artifact, key = signed_artifact(tmp_path, None)
    verdict = verify(artifact, key)
    assert "platform" not in verdict.describe()
    assert verdict.to_dict()["platform"]["firmware"] == "bios"
