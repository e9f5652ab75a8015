"""Provisioning steps: the user's own files, scripts, apt repositories, Ansible
playbooks and reboots, run in the build VM after the upgrade and before
hardening (so hardening has the last word and validation proves it held).

This module reads them from the spec: each step checked strictly, its inputs
hashed for the build key, its host secrets named (their values read only by
:func:`host_secrets`). Running them in the guest is
:mod:`builder.provisioner`'s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from builder.errors import InputError
from builder.spec_section import Section

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


def parse_steps(top: Section, folder: Path) -> tuple[Step, ...]:
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


def _local_path(section: Section, key: str, folder: Path) -> Path:
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


def _guest_path(section: Section, key: str) -> str:
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


def _words(section: Section, key: str, regex: re.Pattern[str], what: str) -> tuple[str, ...]:
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


def _parse_file(section: Section, kind: str, index: int, name: str, folder: Path) -> Step:
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


def _env_map(body: Section) -> tuple[tuple[str, str], ...]:
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


def _parse_shell(section: Section, kind: str, index: int, name: str, folder: Path) -> Step:
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


def _parse_apt(section: Section, kind: str, index: int, name: str, folder: Path) -> Step:
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


def _parse_ansible(section: Section, kind: str, index: int, name: str, folder: Path) -> Step:
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


def _parse_reboot(section: Section, kind: str, index: int, name: str, folder: Path) -> Step:
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


def steps_key(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """The steps as the build key sees them."""
    return [step.digest_inputs() for step in steps]
