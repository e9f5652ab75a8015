"""Platform checks: the firmware, Secure Boot and the TPM, as the guest sees
them in a fresh deployment boot.

What a template must show here comes from its build record (build.json's
``firmware``, which builder/record.py's ``BuildRecord`` reads as its
``firmware`` and ``tpm``), not from the hardening profile: the firmware is a
property of the template, chosen in its spec and baked into its disk (ESP, shim, signed
GRUB), while one profile serves templates of any firmware. So these are not
catalog controls with an ``only_if``: a profile parameter would be a second
place to say the same thing, free to disagree with the disk. Like hygiene,
they run for every template; a check that does not apply (Secure Boot on a
BIOS template) is reported skipped with its reason, never dropped, and its
evidence is still recorded.
"""

from __future__ import annotations

from builder.firmware import PLATFORM_PROBE, Firmware, PlatformState, parse_platform
from hardening.host import Host
from hardening.results import CheckResult, Status

AREA = "platform"
FIRMWARE_CHECK = "PLAT-FIRMWARE"
SECURE_BOOT_CHECK = "PLAT-SECUREBOOT"
TPM_CHECK = "PLAT-TPM"
PCRS_CHECK = "PLAT-PCRS"


def _result(
    check_id: str,
    title: str,
    severity: str,
    ok: bool | None,
    expected: str,
    observed: str,
    reason: str = "",
) -> CheckResult:
    status = Status.skipped if ok is None else Status.passed if ok else Status.failed
    return CheckResult(
        id=check_id,
        title=title,
        area=AREA,
        status=status,
        expected=expected,
        observed=observed,
        severity=severity,
        reason=reason,
    )


def _pcrs_text(state: PlatformState) -> str:
    if not state.pcrs:
        return "no SHA-256 PCRs readable (/sys/class/tpm/tpm0/pcr-sha256)"
    return ", ".join(
        f"PCR {i} {v[:16]}{'' if state.measured(i) else ' (no measurement)'}"
        for i, v in sorted(state.pcrs.items())
    )


def evaluate_platform(state: PlatformState, firmware: Firmware, tpm: bool) -> list[CheckResult]:
    """Four results, whatever the template: firmware, Secure Boot, TPM, PCRs."""
    results = []
    booted = "UEFI" if state.efi else "BIOS (no /sys/firmware/efi)"
    results.append(
        _result(
            FIRMWARE_CHECK,
            "Boots through the firmware it was built for",
            "high",
            state.efi == firmware.is_uefi,
            f"a {'UEFI' if firmware.is_uefi else 'BIOS'} boot (built for {firmware})",
            f"{booted}, kernel {state.kernel or '?'}",
        )
    )
    secure = firmware is Firmware.uefi_secureboot
    sb_observed = f"Secure Boot {state.secure_boot_text()}"
    if state.lockdown:
        sb_observed += f"; kernel lockdown {state.lockdown}"
    results.append(
        _result(
            SECURE_BOOT_CHECK,
            "Secure Boot is enabled and enforcing",
            "high",
            state.secure_boot_enforcing if secure else None,
            "SecureBoot=1, SetupMode=0, shim validation on",
            sb_observed,
            "" if secure else f"not applicable: built for firmware {firmware}",
        )
    )
    tpm_observed = (
        f"/sys/class/tpm/tpm0, TPM {state.tpm_version or '?'}.x"
        if state.tpm
        else "no /sys/class/tpm/tpm0"
    )
    results.append(
        _result(
            TPM_CHECK,
            "The guest sees a TPM 2.0",
            "medium",
            (state.tpm and state.tpm_version == "2") if tpm else None,
            "/sys/class/tpm/tpm0, TPM 2.0",
            tpm_observed,
            "" if tpm else "not applicable: built without a TPM",
        )
    )
    # PCR 0 holds the firmware's own code (SeaBIOS and OVMF both measure
    # it); under Secure Boot PCR 7 holds the Secure Boot policy and keys.
    wanted = (0, 7) if secure else (0,)
    results.append(
        _result(
            PCRS_CHECK,
            "Measured boot extended the TPM's PCRs",
            "medium",
            all(state.measured(i) for i in wanted) if tpm else None,
            "measurements in SHA-256 PCR " + " and ".join(str(i) for i in wanted),
            _pcrs_text(state),
            "" if tpm else "not applicable: built without a TPM",
        )
    )
    return results


def check_platform(host: Host, firmware: Firmware, tpm: bool) -> list[CheckResult]:
    """One remote command (run as root by the caller), then local evaluation."""
    result = host.run(PLATFORM_PROBE)
    return evaluate_platform(parse_platform(result.stdout), firmware, tpm)
