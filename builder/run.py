"""Every external program goes through run(): argv lists only, a fixed locale,
no stdin, and a missing binary turned into a hint about which package holds it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from builder.errors import ToolError
from builder.log import log

# Which Debian package provides each program we call.
PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "sfdisk": "fdisk",
    "ssh-keygen": "openssh-client",
    "openssl": "openssl",
    "chromium": "chromium",
    "mkfs.vfat": "dosfstools",
    "swtpm": "swtpm",
}


def find_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = PACKAGES.get(name, name)
        raise ToolError(
            f"{name} not found",
            hint=f"is {package} installed? (apt-get install {package}, or `goldsmith doctor`)",
        )
    return path


def run(
    cmd: Sequence[str | Path],
    *,
    check: bool = True,
    capture: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    argv = [str(c) for c in cmd]
    argv[0] = find_program(argv[0])
    log.debug("+ %s", shlex.join(argv))
    full_env = dict(os.environ)
    full_env["LANG"] = "C.UTF-8"
    full_env.pop("LC_ALL", None)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(
            argv,
            check=False,
            stdin=subprocess.DEVNULL if input is None else None,
            input=input.decode() if input is not None else None,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            text=True,
            env=full_env,
            cwd=cwd,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{Path(argv[0]).name} did not finish within {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-10:]
        raise ToolError(
            f"{shlex.join([Path(argv[0]).name, *argv[1:]])} failed with exit code "
            f"{proc.returncode}" + ("\n  " + "\n  ".join(tail) if tail else "")
        )
    return proc
