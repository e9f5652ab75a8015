"""Provisioning steps: the user's own files, scripts, apt repositories, Ansible
playbooks and reboots, run in the build VM after the upgrade and before
hardening (so hardening has the last word and validation proves it held).

Every value from the spec reaches the guest as data: file trees and scripts
travel as tar or byte streams on the SSH channel's standard input, paths and
names as ``shlex.quote``d words, environment values in a file of quoted
assignments. Nothing the spec says is spliced into shell text unquoted.

Staging happens under ``/run/goldsmith`` (a tmpfs), so an environment file
holding a host secret never touches the template's disk; secrets are also
masked in every log line (:class:`builder.ssh.Session` redacts them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from builder.errors import BuildError, InputError
from builder.log import complete_step, log
from builder.run import build_environment, program_path

if TYPE_CHECKING:
    from builder.qemu import Machine
    from builder.seed import GuestAccess
    from builder.spec import _Section
    from builder.ssh import Session

STAGE = "/run/goldsmith"
KINDS = ("file", "shell", "apt", "ansible", "reboot")
STEP_KEYS = {"name": False, **dict.fromkeys(KINDS, False)}
FILE_KEYS = {"source": True, "destination": True, "owner": False, "group": False, "mode": False}
SHELL_KEYS = {"inline": False, "script": False, "env": False, "env_from_host": False}
APT_KEYS = {
    "name": True,
    "uri": True,
    "suite": True,
    "components": False,
    "key": True,
    "packages": False,
}
ANSIBLE_KEYS = {"playbook": True, "env_from_host": False}
REBOOT_KEYS: dict[str, bool] = {}

_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_ENV = ENV_NAME
_MODE = re.compile(r"0?[0-7]{3}")
_REPO = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")
_SUITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_STEP_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,80}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_INPUT = 1 << 30  # one provisioning input (a file or a whole folder) at most 1 GiB


@dataclasses.dataclass(frozen=True)
class Input:
    """A file that went into a step: its path relative to the spec's folder and digest."""

    path: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class Step:
    index: int
    kind: str
    name: str
    inputs: tuple[Input, ...] = ()
    # Declared values, part of the build key; secrets are only named.
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    env_from_host: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"provision[{self.index}] ({self.name})"

    def digest_inputs(self) -> dict[str, Any]:
        """What the build key sees: kind, declared settings, input digests, secret names."""
        return {
            "kind": self.kind,
            "name": self.name,
            "settings": dict(self.settings),
            "inputs": [dataclasses.asdict(i) for i in self.inputs],
            "env_from_host": list(self.env_from_host),
        }

    def record(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "name": self.name,
            "inputs": [dataclasses.asdict(i) for i in self.inputs],
            "env_from_host": list(self.env_from_host),
        }


@dataclasses.dataclass(frozen=True)
class FileStep(Step):
    source: Path = Path()
    destination: str = ""
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644


@dataclasses.dataclass(frozen=True)
class ShellStep(Step):
    script: str = ""
    env: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class AptStep(Step):
    repo: str = ""
    uri: str = ""
    suite: str = ""
    components: tuple[str, ...] = ()
    key: bytes = b""
    packages: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class AnsibleStep(Step):
    playbook: Path = Path()


@dataclasses.dataclass(frozen=True)
class RebootStep(Step):
    pass


# --- reading the spec -------------------------------------------------------


def parse_steps(top: _Section, folder: Path) -> tuple[Step, ...]:
    """The spec's ``provision`` list, each step checked and its inputs hashed."""
    if not top.has("provision"):
        return ()
    items = top.data["provision"]
    if not isinstance(items, list):
        raise top.error("provision", "expected a list of steps (file, shell, apt, ansible, reboot)")
    steps: list[Step] = []
    for index, item in enumerate(items):
        section = type(top)(top.path, f"provision[{index}]", item, STEP_KEYS)
        kinds = [k for k in KINDS if section.has(k)]
        if len(kinds) != 1:
            got = " and ".join(kinds) or "none"
            raise section.error(None, f"expected exactly one of {', '.join(KINDS)}, got {got}")
        kind = kinds[0]
        name = section.string("name") if section.has("name") else f"{kind} {index}"
        if not _STEP_NAME.fullmatch(name):
            raise section.error("name", "a one-line name of at most 80 characters")
        steps.append(_PARSERS[kind](section, kind, index, name, folder))
    return tuple(steps)


def _relative(folder: Path, path: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.as_posix()


def _local_path(section: _Section, key: str, folder: Path) -> Path:
    text = section.string(key)
    if _CONTROL.search(text):
        raise section.error(key, "a path without control characters")
    path = Path(os.path.normpath(folder / text))
    # lexists: a dangling symlink is named (and refused) later; a name too long
    # for the file system does not exist rather than raise OSError.
    if not os.path.lexists(path):
        raise section.error(
            key,
            f"{path} does not exist",
            hint="relative paths are resolved against the spec file's folder",
        )
    return path


def _guest_path(section: _Section, key: str) -> str:
    text = section.string(key)
    pure = PurePosixPath(text)
    if (
        not pure.is_absolute()
        or _CONTROL.search(text)
        or ".." in pure.parts
        or text != str(pure)
        or str(pure) == "/"
    ):
        raise section.error(
            key,
            f"expected an absolute guest path without '..', control characters or a "
            f"trailing '/', got {text!r}",
        )
    return text


def _words(section: _Section, key: str, regex: re.Pattern[str], what: str) -> tuple[str, ...]:
    if not section.has(key):
        return ()
    value = section.data[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise section.error(key, f"expected a list of {what}")
    for index, item in enumerate(value):
        if not regex.fullmatch(item):
            raise InputError(
                section.path, f"{section.field(key)}[{index}]", f"{what}, got {item!r}"
            )
    return tuple(value)


def walk_source(source: Path, field: str, spec_path: Path) -> Iterator[tuple[Path, str]]:
    """(path, relative name) for a file or every entry of a folder, sorted;
    symlinks and special files are refused (a symlink could pull any host file
    into the image)."""
    mode = source.lstat().st_mode
    if stat.S_ISLNK(mode):
        raise InputError(spec_path, field, f"{source} is a symbolic link; copy its target instead")
    if stat.S_ISREG(mode):
        yield source, source.name
        return
    if not stat.S_ISDIR(mode):
        raise InputError(spec_path, field, f"{source} is not a regular file or folder")
    for root, dirs, files in os.walk(source):
        dirs.sort()
        for entry in sorted(dirs) + sorted(files):
            path = Path(root) / entry
            mode = path.lstat().st_mode
            rel = path.relative_to(source).as_posix()
            if _CONTROL.search(rel):
                raise InputError(spec_path, field, f"{rel!r} has control characters in its name")
            if stat.S_ISLNK(mode):
                raise InputError(spec_path, field, f"{path} is a symbolic link; refused")
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise InputError(spec_path, field, f"{path} is a special file; refused")
            yield path, rel


def hash_tree(source: Path, field: str, spec_path: Path, folder: Path) -> tuple[Input, ...]:
    inputs = []
    total = 0
    for path, _ in walk_source(source, field, spec_path):
        if path.is_dir():
            continue
        total += path.stat().st_size
        if total > MAX_INPUT:
            raise InputError(spec_path, field, f"{source} is larger than {MAX_INPUT} bytes")
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        inputs.append(Input(_relative(folder, path), digest.hexdigest()))
    return tuple(inputs)


def _parse_file(section: _Section, kind: str, index: int, name: str, folder: Path) -> Step:
    body = section.section(kind, FILE_KEYS)
    source = _local_path(body, "source", folder)
    inputs = hash_tree(source, body.field("source"), body.path, folder)
    destination = _guest_path(body, "destination")
    owner = body.pattern("owner", _USER, "a user name") if body.has("owner") else "root"
    group = body.pattern("group", _USER, "a group name") if body.has("group") else "root"
    mode = 0o644
    if body.has("mode"):
        text = body.data["mode"]
        if not isinstance(text, str) or not _MODE.fullmatch(text):
            raise body.error("mode", 'expected a quoted octal mode such as "0644"')
        mode = int(text, 8)
    return FileStep(
        index=index,
        kind=kind,
        name=name,
        inputs=inputs,
        settings={"destination": destination, "owner": owner, "group": group, "mode": mode},
        source=source,
        destination=destination,
        owner=owner,
        group=group,
        mode=mode,
    )


def _env_map(body: _Section) -> tuple[tuple[str, str], ...]:
    if not body.has("env"):
        return ()
    value = body.data["env"]
    if not isinstance(value, dict):
        raise body.error("env", "expected a mapping of NAME: value")
    out = []
    for key, item in value.items():
        field = f"{body.field('env')}.{key}"
        if not isinstance(key, str) or not _ENV.fullmatch(key):
            raise InputError(body.path, field, "an environment variable name (A-Z, 0-9, _)")
        if not isinstance(item, str | int) or isinstance(item, bool):
            raise InputError(body.path, field, "a string or a number")
        if "\x00" in str(item):
            raise InputError(body.path, field, "a value without NUL bytes")
        out.append((key, str(item)))
    return tuple(out)


def _parse_shell(section: _Section, kind: str, index: int, name: str, folder: Path) -> Step:
    body = section.section(kind, SHELL_KEYS)
    if body.has("inline") == body.has("script"):
        raise body.error(None, "expected exactly one of inline or script")
    if body.has("inline"):
        script = body.string("inline", multiline=True)
        inputs: tuple[Input, ...] = ()
    else:
        path = _local_path(body, "script", folder)
        inputs = hash_tree(path, body.field("script"), body.path, folder)
        if path.is_dir():
            raise body.error("script", f"{path} is a folder; expected a script file")
        try:
            script = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise body.error("script", f"{path} is not UTF-8 text") from None
    env = _env_map(body)
    secrets = _words(body, "env_from_host", _ENV, "environment variable names")
    clash = {k for k, _ in env} & set(secrets)
    if clash:
        raise body.error("env_from_host", f"{sorted(clash)[0]} is also set under env")
    settings: dict[str, Any] = {"env": dict(env)}
    if body.has("inline"):
        settings["inline_sha256"] = hashlib.sha256(script.encode()).hexdigest()
    return ShellStep(
        index=index,
        kind=kind,
        name=name,
        inputs=inputs,
        settings=settings,
        env_from_host=secrets,
        script=script,
        env=env,
    )


def _is_openpgp_key(data: bytes) -> bool:
    if data.lstrip().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"):
        return True
    # A binary key starts with a public-key packet: tag 6, old or new format.
    return bool(data) and (data[0] in (0x98, 0x99, 0x9A, 0xC6))


def _parse_apt(section: _Section, kind: str, index: int, name: str, folder: Path) -> Step:
    body = section.section(kind, APT_KEYS)
    repo = body.pattern("name", _REPO, "a repository name (a-z, 0-9, '-')")
    uri = body.url("uri")
    if _CONTROL.search(uri) or any(c.isspace() for c in uri):
        raise body.error("uri", "a URL without spaces or control characters")
    suite = body.pattern("suite", _SUITE, "a suite name such as stable or bookworm")
    components = _words(body, "components", _COMPONENT, "component names such as main") or ("main",)
    key_path = _local_path(body, "key", folder)
    inputs = hash_tree(key_path, body.field("key"), body.path, folder)
    if key_path.is_dir():
        raise body.error("key", f"{key_path} is a folder; expected an OpenPGP public key file")
    key = key_path.read_bytes()
    if len(key) > 1 << 20 or not _is_openpgp_key(key):
        raise body.error(
            "key",
            "an OpenPGP public key (armored or binary): goldsmith refuses unsigned repositories",
        )
    packages = body.packages("packages")
    return AptStep(
        index=index,
        kind=kind,
        name=name,
        inputs=inputs,
        settings={
            "repo": repo,
            "uri": uri,
            "suite": suite,
            "components": list(components),
            "packages": list(packages),
        },
        repo=repo,
        uri=uri,
        suite=suite,
        components=components,
        key=key,
        packages=packages,
    )


def _parse_ansible(section: _Section, kind: str, index: int, name: str, folder: Path) -> Step:
    body = section.section(kind, ANSIBLE_KEYS)
    playbook = _local_path(body, "playbook", folder)
    if not playbook.is_file() or playbook.is_symlink():
        raise body.error("playbook", f"{playbook} is not a regular file")
    # The playbook's folder (its roles, templates, files) is its input as a whole.
    inputs = hash_tree(playbook.parent, body.field("playbook"), body.path, folder)
    secrets = _words(body, "env_from_host", _ENV, "environment variable names")
    return AnsibleStep(
        index=index,
        kind=kind,
        name=name,
        inputs=inputs,
        settings={"playbook": _relative(folder, playbook)},
        env_from_host=secrets,
        playbook=playbook,
    )


def _parse_reboot(section: _Section, kind: str, index: int, name: str, folder: Path) -> Step:
    value = section.data[kind]
    if value not in (None, {}, True):
        raise section.error(kind, "expected {} (a reboot takes no settings)")
    return RebootStep(index=index, kind=kind, name=name)


_PARSERS = {
    "file": _parse_file,
    "shell": _parse_shell,
    "apt": _parse_apt,
    "ansible": _parse_ansible,
    "reboot": _parse_reboot,
}


def host_secrets(steps: Sequence[Step], spec_path: Path) -> dict[str, str]:
    """The values of every env_from_host name, from goldsmith's own environment.

    Read once, kept in memory only: never in build.json, logs, the build key or
    the image (the names are recorded; the values are masked in logs)."""
    values: dict[str, str] = {}
    for step in steps:
        for name in step.env_from_host:
            value = os.environ.get(name)
            if value is None:
                raise InputError(
                    spec_path,
                    f"provision[{step.index}].{step.kind}.env_from_host",
                    f"{name} is not set in goldsmith's environment",
                )
            if "\x00" in value:
                raise InputError(spec_path, f"provision[{step.index}]", f"{name} holds a NUL byte")
            values[name] = value
    return values


# --- running in the guest ---------------------------------------------------


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
            after = session.run("cat /proc/sys/kernel/random/boot_id", step=step.label).output
            if after.strip() != before.strip():
                break
            # Still the old boot: the reboot has not begun yet.
            session.close()
            if time.monotonic() > deadline:
                raise BuildError(f"{step.label}: the build VM did not reboot")
            time.sleep(1)
        self.session = session
        self._run("cloud-init status --wait >/dev/null || true", step)


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


def steps_key(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """The steps as the build key sees them."""
    return [step.digest_inputs() for step in steps]
