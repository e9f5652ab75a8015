"""Platform checks from the guest's evidence and the build record, without a VM."""

from __future__ import annotations

import contextlib
import dataclasses

from builder.firmware import MARK, Firmware, parse_platform
from hardening.results import Status
from validate.platform import check_platform, evaluate_platform

PCR = "5a" * 32
ON, OFF = "6 0 0 0 1", "6 0 0 0 0"


def evidence(**values: str) -> str:
    return "".join(f"{MARK}{k}={v}\n" for k, v in values.items())


SECURE = evidence(
    efi="1", secureboot=ON, setupmode=OFF, tpm="1", tpm_version="2", pcr0=PCR, pcr7=PCR
)
BIOS_TPM = evidence(efi="0", tpm="1", tpm_version="2", pcr0=PCR)
BIOS = evidence(efi="0", tpm="0")


def statuses(output: str, firmware: Firmware, tpm: bool) -> dict[str, Status]:
    return {r.id: r.status for r in evaluate_platform(parse_platform(output), firmware, tpm)}


def test_a_secure_boot_template_with_tpm_passes_everything() -> None:
    results = evaluate_platform(parse_platform(SECURE), Firmware.uefi_secureboot, True)
    assert [r.id for r in results] == ["PLAT-FIRMWARE", "PLAT-SECUREBOOT", "PLAT-TPM", "PLAT-PCRS"]
    assert all(r.status is Status.passed and r.area == "platform" for r in results), results
    assert results[1].observed == "Secure Boot enabled and enforcing"


def test_a_bios_template_reports_secure_boot_and_tpm_not_applicable() -> None:
    results = evaluate_platform(parse_platform(BIOS), Firmware.bios, False)
    by_id = {r.id: r for r in results}
    assert by_id["PLAT-FIRMWARE"].status is Status.passed
    for check in ("PLAT-SECUREBOOT", "PLAT-TPM", "PLAT-PCRS"):
        # Never dropped: reported, with the reason and the evidence.
        assert by_id[check].status is Status.skipped
        assert by_id[check].reason.startswith("not applicable")
    assert by_id["PLAT-SECUREBOOT"].observed == "Secure Boot unsupported (BIOS boot)"
    assert by_id["PLAT-SECUREBOOT"].reason == "not applicable: built for firmware bios"


def test_secure_boot_off_fails_a_secure_boot_template() -> None:
    off = evidence(efi="1", secureboot=OFF, setupmode=OFF, tpm="0")
    got = statuses(off, Firmware.uefi_secureboot, False)
    assert got["PLAT-SECUREBOOT"] is Status.failed
    assert got["PLAT-FIRMWARE"] is Status.passed
    setup = evidence(efi="1", secureboot=ON, setupmode=ON)
    assert statuses(setup, Firmware.uefi_secureboot, False)["PLAT-SECUREBOOT"] is Status.failed


def test_a_uefi_template_booted_by_bios_fails() -> None:
    assert statuses(BIOS, Firmware.uefi, False)["PLAT-FIRMWARE"] is Status.failed
    assert statuses(SECURE, Firmware.bios, False)["PLAT-FIRMWARE"] is Status.failed


def test_a_missing_tpm_or_empty_pcrs_fail_a_tpm_template() -> None:
    assert statuses(BIOS, Firmware.bios, True)["PLAT-TPM"] is Status.failed
    assert statuses(BIOS, Firmware.bios, True)["PLAT-PCRS"] is Status.failed
    zeros = evidence(efi="0", tpm="1", tpm_version="2", pcr0="0" * 64)
    assert statuses(zeros, Firmware.bios, True)["PLAT-PCRS"] is Status.failed
    old = evidence(efi="0", tpm="1", tpm_version="1", pcr0=PCR)
    assert statuses(old, Firmware.bios, True)["PLAT-TPM"] is Status.failed
    got = statuses(BIOS_TPM, Firmware.bios, True)
    assert got["PLAT-TPM"] is Status.passed and got["PLAT-PCRS"] is Status.passed
    # Under Secure Boot PCR 7 (the Secure Boot policy) must be measured too.
    no7 = evidence(efi="1", secureboot=ON, setupmode=OFF, tpm="1", tpm_version="2", pcr0=PCR)
    assert statuses(no7, Firmware.uefi_secureboot, True)["PLAT-PCRS"] is Status.failed


@dataclasses.dataclass(frozen=True)
class FakeResult:
    rc: int
    stdout: str
    stderr: str = ""


class FakeHost:
    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.commands: list[str] = []

    def run(self, command: str, *args: str) -> FakeResult:
        self.commands.append(command)
        return FakeResult(0, self.stdout)

    def sudo(self, user: str | None = None) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def test_one_remote_command() -> None:
    host = FakeHost(SECURE)
    results = check_platform(host, Firmware.uefi_secureboot, True)
    assert len(host.commands) == 1 and "SecureBoot-8be4df61" in host.commands[0]
    assert {r.status for r in results} == {Status.passed}
