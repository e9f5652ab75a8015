"""Every external program goes through run(): argv lists only, an environment
built here (a fixed locale and PATH, not the caller's whole environment), no
stdin, and a missing binary turned into a hint about which package holds it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
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


# Programs are found in the system's folders, then in the running Python's
# (where pip puts what is installed beside goldsmith, e.g. ansible-playbook),
# never through whatever PATH the caller had: which qemu-img or mmdebstrap a
# build runs must not depend on the shell that started it.
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

# What a child may take from goldsmith's environment: where it may write, and
# how this host reaches the network (proxies, a CA bundle). Nothing else: a
# secret in goldsmith's environment (env_from_host values, a key passphrase, a
# token's PIN) reaches a program only when its caller passes it in ``env``,
# and variables that change how tools behave (APT_CONFIG, LD_PRELOAD,
# SOURCE_DATE_EPOCH...) cannot leak into a build unseen by its build key.
PASSED_THROUGH = (
    "HOME",
    "TMPDIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
)


def program_path() -> str:
    """The PATH children get and programs are found in."""
    folders = [*SYSTEM_PATH, str(Path(sys.executable).parent)]
    return os.pathsep.join(dict.fromkeys(folders))


def build_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A child's whole environment: LANG=C.UTF-8, the fixed PATH, the variables
    of PASSED_THROUGH that are set, then ``env`` (which may override any)."""
    built = {"LANG": "C.UTF-8", "PATH": program_path()}
    built.update({name: os.environ[name] for name in PASSED_THROUGH if name in os.environ})
    built.update(env or {})
    return built


def find_program(name: str) -> str:
    path = shutil.which(name, path=program_path())
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
    try:
        proc = subprocess.run(
            argv,
            check=False,
            stdin=subprocess.DEVNULL if input is None else None,
            input=input.decode() if input is not None else None,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            text=True,
            env=build_environment(env),
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
