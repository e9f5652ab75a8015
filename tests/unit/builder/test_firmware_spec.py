"""Firmware: the spec's field, the guest's evidence read strictly, and what the
build records."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from builder.buildkey import base_identity
from builder.errors import InputError
from builder.firmware import (
    MARK,
    PLATFORM_PROBE,
    Firmware,
    firmware_record,
    parse_platform,
    platform_problem,
)
from builder.spec import DebootstrapBase, load_spec

SPEC = """\
name: t
version: "1"
base:
  debootstrap:
    suite: bookworm
profile: baseline
"""


def spec_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC + textwrap.dedent(extra))
    return path


# --- the spec ---------------------------------------------------------------


def test_bios_without_tpm_by_default(tmp_path: Path) -> None:
    spec = load_spec(spec_file(tmp_path))
    assert spec.firmware is Firmware.bios and spec.tpm is False
    assert isinstance(spec.base, DebootstrapBase) and spec.base.firmware is Firmware.bios
    assert spec.canonical()["firmware"] == "bios" and spec.canonical()["tpm"] is False


@pytest.mark.parametrize("value", ["bios", "uefi", "uefi-secureboot"])
def test_each_firmware_reaches_the_base_and_the_build_key(tmp_path: Path, value: str) -> None:
    spec = load_spec(spec_file(tmp_path, f"firmware: {value}\ntpm: true\n"))
    assert spec.firmware == Firmware(value) and spec.tpm is True
    assert isinstance(spec.base, DebootstrapBase) and spec.base.firmware == Firmware(value)
    assert spec.canonical()["firmware"] == value


def test_firmware_changes_the_spec_and_the_base_identity(tmp_path: Path) -> None:
    bios = load_spec(spec_file(tmp_path))
    (tmp_path / "b").mkdir()
    secure = load_spec(spec_file(tmp_path / "b", "firmware: uefi-secureboot\n"))
    (tmp_path / "c").mkdir()
    tpm = load_spec(spec_file(tmp_path / "c", "tpm: true\n"))
    assert bios.canonical() != secure.canonical() != tpm.canonical() != bios.canonical()
    assert base_identity(bios) != base_identity(secure)
    # A TPM is the machine's, not the disk's: the base stays the same.
    assert base_identity(bios) == base_identity(tpm)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("firmware: efi\n", "expected one of bios, uefi, uefi-secureboot, got 'efi'"),
        ("firmware: uefi_secureboot\n", "did you mean 'uefi-secureboot'?"),
        ("firmware: true\n", "expected a string, got boolean true"),
        ("firmware: [uefi]\n", "expected a string, got a list"),
        ('firmware: "uefi\\n"\n', "control characters"),
        ("tpm: yes-please\n", "expected true or false"),
        ('tpm: "true"\n', "expected true or false, got string 'true'"),
        ("firmwre: uefi\n", "did you mean 'firmware'?"),
    ],
)
def test_bad_firmware_is_one_line_naming_the_field(
    tmp_path: Path, extra: str, expected: str
) -> None:
    with pytest.raises(InputError) as info:
        load_spec(spec_file(tmp_path, extra))
    assert info.value.exit_code == 2
    assert expected in info.value.message
    assert "\n" not in info.value.message


# --- the guest's evidence ---------------------------------------------------

SB_ON = "6 0 0 0 1"
SB_OFF = "6 0 0 0 0"
PCR = "a" * 64


def probe_output(**values: str) -> str:
    lines = ["noise before", *(f"{MARK}{k}={v}" for k, v in values.items()), "noise after"]
    return "\n".join(lines) + "\n"


def test_secure_boot_enforcing_needs_user_mode_and_shim_validation() -> None:
    state = parse_platform(
        probe_output(
            efi="1",
            secureboot=SB_ON,
            setupmode=SB_OFF,
            moksbstate="",
            lockdown="none [integrity] confidentiality",
            tpm="1",
            tpm_version="2",
            pcr0=PCR,
            pcr4="0" * 64,
            pcr7="F" * 64,
            kernel="6.1.0-37-cloud-amd64",
        )
    )
    assert state.efi and state.secure_boot and state.setup_mode is False
    assert state.secure_boot_enforcing
    assert state.secure_boot_text() == "enabled and enforcing"
    assert state.lockdown == "integrity"
    assert state.tpm and state.tpm_version == "2"
    # Zeros (never extended) and all ones (never reset) are no measurement.
    assert state.measured(0) and not state.measured(4) and not state.measured(7)
    assert state.record()["pcrs_sha256"] == {"0": PCR, "4": "0" * 64, "7": "f" * 64}


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ({"efi": "0"}, "unsupported (BIOS boot)"),
        ({"efi": "1"}, "unknown (no SecureBoot variable)"),
        ({"efi": "1", "secureboot": SB_OFF, "setupmode": SB_OFF}, "disabled"),
        (
            {"efi": "1", "secureboot": SB_ON, "setupmode": SB_ON},
            "enabled, but the firmware is in setup mode",
        ),
        ({"efi": "1", "secureboot": SB_ON}, "enabled, but the firmware is in setup mode"),
        (
            {"efi": "1", "secureboot": SB_ON, "setupmode": SB_OFF, "moksbstate": "7 0 0 0 1"},
            "enabled, but shim validation is disabled (MokSBState)",
        ),
        # Unreadable evidence is absence, never presence.
        (
            {"efi": "1", "secureboot": "1 x", "setupmode": SB_OFF},
            "unknown (no SecureBoot variable)",
        ),
        ({"efi": "yes", "secureboot": SB_ON, "setupmode": SB_OFF}, "unsupported (BIOS boot)"),
    ],
)
def test_anything_short_of_enforcing_is_named(values: dict[str, str], text: str) -> None:
    state = parse_platform(probe_output(**values))
    assert not state.secure_boot_enforcing
    assert state.secure_boot_text() == text


def test_an_empty_answer_is_no_efi_no_tpm() -> None:
    state = parse_platform("")
    assert not state.efi and not state.tpm and state.pcrs == {}
    assert parse_platform(probe_output(pcr0="zz" * 32)).pcrs == {}


def test_platform_problem_compares_the_guest_with_the_spec() -> None:
    secure = parse_platform(
        probe_output(efi="1", secureboot=SB_ON, setupmode=SB_OFF, tpm="1", pcr0=PCR)
    )
    plain_uefi = parse_platform(probe_output(efi="1", secureboot=SB_OFF, setupmode=SB_OFF))
    bios = parse_platform(probe_output(efi="0", tpm="0"))
    assert platform_problem(Firmware.uefi_secureboot, True, secure) is None
    assert platform_problem(Firmware.uefi, False, secure) is None
    assert platform_problem(Firmware.bios, False, bios) is None
    assert "Secure Boot is disabled" in str(
        platform_problem(Firmware.uefi_secureboot, False, plain_uefi)
    )
    assert "did not boot through UEFI" in str(platform_problem(Firmware.uefi, False, bios))
    assert "the spec says bios" in str(platform_problem(Firmware.bios, False, plain_uefi))
    assert "no TPM" in str(platform_problem(Firmware.bios, True, bios))


def test_the_record_names_the_ovmf_files_by_digest(tmp_path: Path) -> None:
    for name in ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"):
        (tmp_path / name).write_bytes(b"firmware")
    record = firmware_record(Firmware.uefi_secureboot, True, tmp_path)
    assert record["type"] == "uefi-secureboot" and record["tpm"] is True
    assert record["ovmf"]["code"]["path"].endswith("OVMF_CODE_4M.secboot.fd")
    assert record["ovmf"]["vars"]["sha256"] == hashlib.sha256(b"firmware").hexdigest()
    assert firmware_record(Firmware.bios, False) == {"type": "bios", "tpm": False}


def test_the_probe_reads_the_uefi_global_variables() -> None:
    # EFI_GLOBAL_VARIABLE, as the kernel names the files under efivarfs.
    assert "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c" in PLATFORM_PROBE
    assert "SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c" in PLATFORM_PROBE
    # shim's own variables live under SHIM_LOCK_GUID.
    assert "MokSBStateRT-605dab50-e046-4300-abb6-3dd810dd8b23" in PLATFORM_PROBE
