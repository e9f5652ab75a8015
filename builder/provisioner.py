"""Running provisioning steps in the build VM (the steps themselves, read from
the spec, are :mod:`builder.provision`'s).

Every value from the spec reaches the guest as data: file trees and scripts
travel as tar or byte streams on the SSH channel's standard input, paths and
names as ``shlex.quote``d words, environment values in a file of quoted
assignments. Nothing the spec says is spliced into shell text unquoted.

Staging happens under ``/run/goldsmith`` (a tmpfs), so an environment file
holding a host secret never touches the template's disk; secrets are also
masked in every log line (:class:`builder.ssh.Session` redacts them).
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from builder import cloudinit
from builder.errors import BuildError, GoldsmithError, InputError
from builder.log import complete_step, log
from builder.provision import (
    AnsibleStep,
    AptStep,
    FileStep,
    RebootStep,
    ShellStep,
    Step,
    walk_source,
)
from builder.run import build_environment, program_path

if TYPE_CHECKING:
    from builder.qemu import Machine
    from builder.seed import GuestAccess
    from builder.ssh import Session

STAGE = "/run/goldsmith"


def _tar(entries: Sequence[tuple[str, bytes | None, int]], owner: str, group: str) -> bytes:
    """A tar stream of (name, content or None for a folder, mode), owned by name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, content, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.uname, info.gname = owner, group
            info.mtime = 0
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _env_file(pairs: Sequence[tuple[str, str]]) -> bytes:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in pairs).encode()


def _put(session: Session, data: bytes, remote: str, label: str, mode: str = "0600") -> None:
    """Write ``data`` to a root-owned file in the guest through the channel's stdin."""
    session.run(
        f"umask 077; install -d -m 0700 {STAGE}; cat > {shlex.quote(remote)}; "
        f"chmod {mode} {shlex.quote(remote)}",
        step=label,
        stdin=data,
    )


class Provisioner:
    """Runs a spec's steps in one build VM, reconnecting after reboots."""

    def __init__(
        self,
        session: Session,
        *,
        machine: Machine,
        access: GuestAccess,
        spec_path: Path,
        secrets: Mapping[str, str],
        boot_timeout: float,
        step_timeout: float,
    ) -> None:
        self.session = session
        self.machine = machine
        self.access = access
        self.spec_path = spec_path
        self.secrets = dict(secrets)
        self.boot_timeout = boot_timeout
        self.step_timeout = step_timeout

    def run_all(self, steps: Sequence[Step]) -> list[dict[str, Any]]:
        records = []
        for step in steps:
            start = time.monotonic()
            with complete_step(f"Provisioning step {step.index}: {step.kind} ({step.name})"):
                self.run_step(step)
            record = step.record()
            record["seconds"] = round(time.monotonic() - start, 2)
            records.append(record)
        if steps:
            self.session.run(f"rm -rf {STAGE}", step="provision cleanup")
        return records

    def run_step(self, step: Step) -> None:
        if isinstance(step, FileStep):
            self._file(step)
        elif isinstance(step, ShellStep):
            self._shell(step)
        elif isinstance(step, AptStep):
            self._apt(step)
        elif isinstance(step, AnsibleStep):
            self._ansible(step)
        elif isinstance(step, RebootStep):
            self._reboot(step)
        else:  # pragma: no cover - the parser makes only the kinds above
            raise BuildError(f"{step.label}: unknown step kind {step.kind}")

    def _run(self, command: str, step: Step, *, stdin: bytes | None = None) -> None:
        result = self.session.run(
            command, step=step.label, timeout=self.step_timeout, check=False, stdin=stdin
        )
        if not result.ok:
            tail = [line for line in result.output.splitlines() if line.strip()][-15:]
            raise BuildError(
                f"{step.label} failed: exit code {result.rc}",
                hint="last output:\n    " + "\n    ".join(tail or ["(none)"]),
            )

    def _file(self, step: FileStep) -> None:
        root = step.source
        entries: list[tuple[str, bytes | None, int]] = []
        dest = PurePosixPath(step.destination)
        if root.is_dir():
            target, prefix = dest, ""
            for path, rel in walk_source(root, "source", self.spec_path):
                if path.is_dir():
                    entries.append((rel, None, 0o755))
                else:
                    entries.append((rel, path.read_bytes(), step.mode))
        else:
            target, prefix = dest.parent, dest.name
            entries.append((prefix, root.read_bytes(), step.mode))
        data = _tar(entries, step.owner, step.group)
        t = shlex.quote(str(target))
        # --same-owner maps the entries' owner names to the guest's ids;
        # --no-overwrite-dir keeps existing folders (/etc) as they are.
        self._run(
            f"getent passwd {shlex.quote(step.owner)} >/dev/null "
            f"|| {{ echo 'no user {step.owner} in the guest'; exit 3; }}; "
            f"getent group {shlex.quote(step.group)} >/dev/null "
            f"|| {{ echo 'no group {step.group} in the guest'; exit 3; }}; "
            f"install -d -m 0755 {t} && "
            f"tar -x --same-owner --same-permissions --no-overwrite-dir -C {t} -f -",
            step,
            stdin=data,
        )

    def _shell(self, step: ShellStep) -> None:
        script = f"{STAGE}/step-{step.index}.sh"
        env = f"{STAGE}/step-{step.index}.env"
        pairs = [*step.env, *((n, self.secrets[n]) for n in step.env_from_host)]
        _put(self.session, step.script.encode(), script, step.label, "0700")
        _put(self.session, _env_file(pairs), env, step.label)
        # The environment file is read and removed before the script starts.
        self._run(
            f"set -a; . {env}; set +a; rm -f {env}; cd /root && bash -e {script} </dev/null",
            step,
        )

    def _apt(self, step: AptStep) -> None:
        keyring = f"/etc/apt/keyrings/goldsmith-{step.repo}." + (
            "asc" if step.key.lstrip().startswith(b"-----BEGIN") else "gpg"
        )
        sources = (
            "Types: deb\n"
            f"URIs: {step.uri}\n"
            f"Suites: {step.suite}\n"
            f"Components: {' '.join(step.components)}\n"
            f"Signed-By: {keyring}\n"
        ).encode()
        staged = f"{STAGE}/{step.repo}"
        _put(self.session, step.key, f"{staged}.key", step.label, "0644")
        _put(self.session, sources, f"{staged}.sources", step.label, "0644")
        apt = (
            "DEBIAN_FRONTEND=noninteractive apt-get -q "
            "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
        )
        command = (
            "install -d -m 0755 /etc/apt/keyrings && "
            f"install -m 0644 {staged}.key {keyring} && "
            f"install -m 0644 {staged}.sources "
            f"/etc/apt/sources.list.d/goldsmith-{step.repo}.sources && "
            # apt refuses a repository whose Release is unsigned or signed by
            # another key; --error-on=any makes that a failed step, not a warning.
            # Only the new repository's indexes when the archive's were read
            # already (the upgrade); everything when they were not.
            "if compgen -G '/var/lib/apt/lists/*_InRelease' >/dev/null; then "
            f"{apt} --error-on=any update "
            f"-o Dir::Etc::sourcelist=sources.list.d/goldsmith-{step.repo}.sources "
            "-o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0; "
            f"else {apt} --error-on=any update; fi"
        )
        if step.packages:
            command += f" && {apt} -y install " + " ".join(map(shlex.quote, step.packages))
        self._run(command, step)

    def _ansible(self, step: AnsibleStep) -> None:
        playbook_cmd = ansible_playbook(self.spec_path, step)
        host_line = _known_hosts_line(self.machine.ssh_port, self.access.host_key.public_openssh)
        with tempfile.TemporaryDirectory(prefix="goldsmith-ansible-") as tmp:
            folder = Path(tmp)
            key = folder / "id"
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.access.client_key.private_openssh)
            (folder / "known_hosts").write_text(host_line + "\n")
            inventory = {
                "all": {
                    "hosts": {
                        "build": {
                            "ansible_host": "127.0.0.1",
                            "ansible_port": self.machine.ssh_port,
                            "ansible_user": self.access.user,
                            "ansible_ssh_private_key_file": str(key),
                            "ansible_become": True,
                            "ansible_python_interpreter": "/usr/bin/python3",
                            # Pinned, never trusted on first use.
                            "ansible_ssh_common_args": (
                                "-o StrictHostKeyChecking=yes "
                                f"-o UserKnownHostsFile={shlex.quote(str(folder / 'known_hosts'))} "
                                "-o IdentitiesOnly=yes -o GlobalKnownHostsFile=/dev/null"
                            ),
                        }
                    }
                }
            }
            (folder / "inventory.json").write_text(json.dumps(inventory))
            secrets = {n: self.secrets[n] for n in step.env_from_host}
            env = ansible_environment(folder, step.playbook, secrets)
            cmd = [playbook_cmd, "-i", str(folder / "inventory.json"), str(step.playbook)]
            log.debug("+ %s", shlex.join(cmd))
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=step.playbook.parent,
            )
            assert proc.stdout is not None
            tail: list[str] = []
            deadline = time.monotonic() + self.step_timeout
            for raw in proc.stdout:
                line = self.session.redact(raw.decode(errors="replace").rstrip())
                log.debug("  | %s", line)
                tail = [*tail[-14:], line] if line.strip() else tail
                if time.monotonic() > deadline:
                    proc.kill()
                    break
            rc = proc.wait()
        if rc != 0:
            raise BuildError(
                f"{step.label} failed: ansible-playbook exited with {rc}",
                hint="last output:\n    " + "\n    ".join(tail or ["(none)"]),
            )

    def _reboot(self, step: RebootStep) -> None:
        import paramiko

        from builder.ssh import Session, wait_for_machine

        before = self.session.run("cat /proc/sys/kernel/random/boot_id", step=step.label).output
        masked = self.session.secrets  # the step secrets and the apt proxy's
        # Detached so the command returns before sshd goes away.
        self.session.run("systemd-run --no-block --on-active=1 systemctl reboot", step=step.label)
        self.session.close()
        deadline = time.monotonic() + self.boot_timeout
        while True:
            client = wait_for_machine(
                self.machine, self.access, timeout=max(deadline - time.monotonic(), 1)
            )
            session = Session(client, secrets=masked)
            try:
                after = session.run(
                    "cat /proc/sys/kernel/random/boot_id", step=step.label, timeout=30
                ).output
            except (GoldsmithError, paramiko.SSHException, OSError, EOFError):
                # The old boot went down under this connection (its sshd was
                # still answering as the guest shut down): not rebooted yet.
                after = before
            if after.strip() != before.strip():
                break
            # Still the old boot: the reboot has not begun yet, or has not ended.
            session.close()
            if time.monotonic() > deadline:
                raise BuildError(f"{step.label}: the build VM did not reboot")
            time.sleep(1)
        self.session = session
        self._run(cloudinit.wait_script(self.step_timeout), step)


def ansible_playbook(spec_path: Path, step: Step) -> str:
    """ansible-playbook: the one installed beside goldsmith (the ansible extra)
    first, then the programs' fixed PATH (builder.run); bad input naming the
    step and the extra when missing."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    found = (
        str(beside) if beside.is_file() else shutil.which("ansible-playbook", path=program_path())
    )
    if found is None:
        raise InputError(
            spec_path,
            f"provision[{step.index}].ansible",
            "ansible-playbook is not installed",
            hint="install goldsmith's ansible extra: pip install 'goldsmith[ansible]'",
        )
    return found


def ansible_environment(folder: Path, playbook: Path, secrets: Mapping[str, str]) -> dict[str, str]:
    """ansible-playbook's environment: built like every child's (builder.run),
    its home and temporary files in the step's private ``folder``, and of
    goldsmith's own environment only the step's host secrets."""
    return build_environment(
        {
            "HOME": str(folder),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCAL_TEMP": str(folder / "tmp"),
            "ANSIBLE_ROLES_PATH": str(playbook.parent / "roles"),
            "ANSIBLE_INVENTORY_ENABLED": "yaml",
            **secrets,
        }
    )


def _known_hosts_line(port: int, public_openssh: str) -> str:
    kind, blob = public_openssh.split()[:2]
    return f"[127.0.0.1]:{port} {kind} {blob}"
