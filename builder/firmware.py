"""Firmware and the virtual TPM: which OVMF files a machine boots, the
software TPM beside it, and what a guest says about both.

QEMU's command line is built in ``builder.qemu_command``; this module owns the host
files and processes that line refers to, and reading the guest's answer, so
the build (recording what the build VM saw) and validation (proving it in a
fresh boot) judge the same evidence the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from builder.errors import ToolError
from builder.log import log
from builder.run import build_environment, program_path


class Firmware(enum.StrEnum):
    """What the template boots from. ``uefi_secureboot`` is the one member whose
    name cannot equal its value (a hyphen); YAML, click and JSON see the value."""

    bios = "bios"
    uefi = "uefi"
    uefi_secureboot = "uefi-secureboot"

    @property
    def is_uefi(self) -> bool:
        return self is not Firmware.bios


OVMF_DIR = Path("/usr/share/OVMF")


@dataclasses.dataclass(frozen=True)
class OvmfFiles:
    """OVMF's code (read-only, shared) and the variable store each machine copies."""

    code: Path
    vars_template: Path


# Debian's ovmf package. Secure Boot takes the SMM build (the variable store
# is then writable only from SMM, so the guest OS cannot enrol its own keys)
# and a store with Microsoft's keys enrolled, which is what signs shim.
_OVMF = {
    Firmware.uefi: ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
    Firmware.uefi_secureboot: ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"),
}


def ovmf_files(firmware: Firmware, folder: Path = OVMF_DIR) -> OvmfFiles:
    """The OVMF files for a UEFI firmware; a ToolError naming the package when absent."""
    if not firmware.is_uefi:
        raise ValueError(f"{firmware} needs no OVMF files")
    code, store = (folder / name for name in _OVMF[firmware])
    for path in (code, store):
        if not path.is_file():
            raise ToolError(
                f"{path} not found (firmware {firmware})",
                hint="is ovmf installed? (apt-get install ovmf, or `goldsmith doctor`)",
            )
    return OvmfFiles(code=code, vars_template=store)


def firmware_record(firmware: Firmware, tpm: bool, folder: Path = OVMF_DIR) -> dict[str, Any]:
    """What build.json says about the machine's firmware: the kind, the TPM,
    and for UEFI which OVMF build and variable store it booted (by digest)."""
    record: dict[str, Any] = {"type": str(firmware), "tpm": tpm}
    if firmware.is_uefi:
        files = ovmf_files(firmware, folder)
        record["ovmf"] = {
            name: {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
            for name, path in (("code", files.code), ("vars", files.vars_template))
        }
    return record


def require_program(name: str, package: str) -> str:
    path = shutil.which(name, path=program_path())
    if path is None:
        raise ToolError(
            f"{name} not found",
            hint=f"is {package} installed? (apt-get install {package}, or `goldsmith doctor`)",
        )
    return path


# -- the software TPM ----------------------------------------------------------


def swtpm_command(state: Path, socket: Path, log_file: Path) -> list[str]:
    """swtpm as a TPM 2.0 on a unix control socket QEMU connects to.

    ``--terminate``: swtpm exits when QEMU closes the connection, so a QEMU
    killed hard still leaves no TPM behind. swtpm's option lists have no
    escape for a comma, so the caller's folder must not hold one.
    """
    for path in (state, socket, log_file):
        if "," in str(path):
            raise ToolError(f"{path}: swtpm cannot take a path holding a comma")
    return [
        *("swtpm", "socket", "--tpm2", "--terminate"),
        *("--tpmstate", f"dir={state},mode=0600"),
        *("--ctrl", f"type=unixio,path={socket},mode=0600"),
        *("--log", f"file={log_file},level=1"),
    ]


@contextlib.contextmanager
def start_swtpm(folder: Path, *, timeout: float = 10.0) -> Iterator[Path]:
    """A fresh TPM 2.0 for one machine, its state in ``folder`` (the VM's
    private folder, removed with it); yields the control socket's path.

    A fresh state for every boot: the template carries no TPM secrets, and a
    deployer's platform provides its own TPM.
    """
    program = require_program("swtpm", "swtpm")
    state = folder / "tpm"
    state.mkdir(mode=0o700, exist_ok=True)
    socket = folder / "swtpm.sock"
    log_file = folder / "swtpm.log"
    cmd = swtpm_command(state, socket, log_file)
    cmd[0] = program
    log.debug("+ %s", " ".join(cmd))
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=build_environment(),
    )
    try:
        deadline = time.monotonic() + timeout
        while not socket.exists():
            if proc.poll() is not None:
                err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")
                raise ToolError(f"swtpm exited at start with code {proc.returncode}: {err[-300:]}")
            if time.monotonic() > deadline:
                raise ToolError(f"swtpm did not open its socket within {timeout:.0f}s")
            time.sleep(0.05)
        yield socket
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


# -- what the guest says -------------------------------------------------------

# EFI_GLOBAL_VARIABLE (UEFI spec): SecureBoot, SetupMode, PK, KEK, db, ...
EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SHIM_LOCK = "605dab50-e046-4300-abb6-3dd810dd8b23"
MARK = "::goldsmith-platform::"

# One command, run as root; each value on its own marked line. An EFI
# variable's file is 4 attribute bytes then the data: the last byte of
# SecureBoot and SetupMode is the flag. MokSBStateRT exists (non-zero) only
# when shim's own validation was switched off with mokutil.
PLATFORM_PROBE = f"""\
m={MARK}
efivar() {{ f=/sys/firmware/efi/efivars/$1; [ -r "$f" ] && od -An -tu1 "$f" | tr -s ' \\n' ' '; }}
if [ -d /sys/firmware/efi ]; then echo "${{m}}efi=1"; else echo "${{m}}efi=0"; fi
echo "${{m}}secureboot=$(efivar SecureBoot-{EFI_GLOBAL})"
echo "${{m}}setupmode=$(efivar SetupMode-{EFI_GLOBAL})"
echo "${{m}}moksbstate=$(efivar MokSBStateRT-{SHIM_LOCK})"
echo "${{m}}lockdown=$(cat /sys/kernel/security/lockdown 2>/dev/null)"
if [ -e /sys/class/tpm/tpm0 ]; then echo "${{m}}tpm=1"; else echo "${{m}}tpm=0"; fi
echo "${{m}}tpm_version=$(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null)"
for p in 0 4 7; do
  echo "${{m}}pcr$p=$(cat /sys/class/tpm/tpm0/pcr-sha256/$p 2>/dev/null)"
done
echo "${{m}}kernel=$(uname -r)"
"""


@dataclasses.dataclass(frozen=True)
class PlatformState:
    """The firmware and TPM as the guest's kernel sees them."""

    efi: bool
    secure_boot: bool | None  # None: no SecureBoot variable (BIOS, or no EFI variables)
    setup_mode: bool | None
    shim_validation_off: bool
    lockdown: str
    tpm: bool
    tpm_version: str
    pcrs: dict[int, str]  # PCR index -> hex digest in the SHA-256 bank
    kernel: str

    @property
    def secure_boot_enforcing(self) -> bool:
        """Firmware enforces signatures (SecureBoot=1), its keys are enrolled
        (SetupMode=0: in setup mode anyone may enrol a key), and shim has not
        been told to stop checking (MokSBStateRT)."""
        return (
            self.efi
            and bool(self.secure_boot)
            and self.setup_mode is False
            and not self.shim_validation_off
        )

    def secure_boot_text(self) -> str:
        if not self.efi:
            return "unsupported (BIOS boot)"
        if self.secure_boot is None:
            return "unknown (no SecureBoot variable)"
        if not self.secure_boot:
            return "disabled"
        if self.setup_mode is not False:
            return "enabled, but the firmware is in setup mode"
        if self.shim_validation_off:
            return "enabled, but shim validation is disabled (MokSBState)"
        return "enabled and enforcing"

    def measured(self, index: int) -> bool:
        """A PCR holds a measurement: neither the reset value (zeros) nor all ones."""
        value = self.pcrs.get(index, "")
        return bool(value) and set(value.lower()) not in ({"0"}, {"f"})

    def record(self) -> dict[str, Any]:
        return {
            "efi": self.efi,
            "secure_boot": self.secure_boot_text(),
            "secure_boot_enforcing": self.secure_boot_enforcing,
            "lockdown": self.lockdown,
            "tpm": self.tpm,
            "tpm_version": self.tpm_version,
            "pcrs_sha256": {str(k): v for k, v in sorted(self.pcrs.items())},
            "kernel": self.kernel,
        }


def _flag(value: str) -> bool | None:
    numbers = value.split()
    if not numbers or not all(n.isdigit() for n in numbers):
        return None
    return numbers[-1] != "0"


def parse_platform(output: str) -> PlatformState:
    """PLATFORM_PROBE's output; anything missing reads as absent, never as present."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith(MARK):
            key, _, value = line[len(MARK) :].partition("=")
            values[key] = value.strip()
    pcrs = {}
    for index in (0, 4, 7):
        value = values.get(f"pcr{index}", "")
        if value and all(c in "0123456789abcdefABCDEF" for c in value):
            pcrs[index] = value.lower()
    lockdown = values.get("lockdown", "")
    if "[" in lockdown:
        lockdown = lockdown.partition("[")[2].partition("]")[0]
    return PlatformState(
        efi=values.get("efi") == "1",
        secure_boot=_flag(values.get("secureboot", "")),
        setup_mode=_flag(values.get("setupmode", "")),
        shim_validation_off=bool(_flag(values.get("moksbstate", ""))),
        lockdown=lockdown,
        tpm=values.get("tpm") == "1",
        tpm_version=values.get("tpm_version", ""),
        pcrs=pcrs,
        kernel=values.get("kernel", ""),
    )


def platform_problem(firmware: Firmware, tpm: bool, state: PlatformState) -> str | None:
    """What the guest shows that the spec did not ask for, or None.

    A build whose machine already contradicts its spec stops there rather
    than after hardening and sealing; validation proves the same in a fresh
    boot either way.
    """
    if firmware.is_uefi and not state.efi:
        return f"the guest did not boot through UEFI (firmware {firmware})"
    if not firmware.is_uefi and state.efi:
        return "the guest booted through UEFI, the spec says bios"
    if firmware is Firmware.uefi_secureboot and not state.secure_boot_enforcing:
        return f"Secure Boot is {state.secure_boot_text()} in the guest"
    if tpm and not state.tpm:
        return "the guest sees no TPM (/sys/class/tpm/tpm0)"
    return None
