"""Key/value configuration files: login.defs ("KEY value"), pwquality.conf,
faillock.conf, auditd.conf ("key = value"), journald drop-ins ([Journal]).

The check reads every file that can set the key, in the order the program
reads them, and judges the value that wins."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from hardening.compare import Op
from hardening.errors import FactsError, ParamError
from hardening.facts import SAFE_GLOB, SAFE_PATH, Facts, Probe, file_contents, probe_files
from hardening.mechanisms.base import (
    Mechanism,
    Outcome,
    Setting,
    error,
    get_opt_str,
    get_settings,
    get_str,
)
from hardening.results import Status
from hardening.shell import ere_escape, ere_nocase, heredoc, q

KEY = r"[A-Za-z0-9_.-]+"


class Separator(enum.StrEnum):
    space = "space"  # KEY value
    equals = "equals"  # key = value


class Reload(enum.StrEnum):
    none = "none"
    journald = "journald"
    auditd = "auditd"


@dataclasses.dataclass(frozen=True)
class KvSpec:
    path: str  # the file the apply side writes
    read: tuple[str, ...]  # globs read by the program, lowest precedence first
    separator: Separator
    section: str  # an INI section header written at the top of a new file, or ""
    first_wins: bool
    reload: Reload
    settings: tuple[Setting, ...]


def parse_kv(text: str, separator: Separator) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;[":
            continue
        if separator is Separator.equals:
            key, _, value = line.partition("=")
        else:
            key, _, value = line.replace("\t", " ").partition(" ")
        values[key.strip()] = " ".join(value.split())
    return values


def _settings(params: Mapping[str, Any]) -> tuple[Setting, ...]:
    out = []
    for field, setting in get_settings(
        params, "settings", KEY, "a configuration key", join_list_write=True
    ):
        if setting.write is not None and "\n" in setting.write:
            raise ParamError(f"{field}.write", "a one-line value")
        out.append(setting)
    return tuple(out)


class ConfigKv(Mechanism[KvSpec]):
    name = "config_kv"
    phase = 50
    keys = frozenset({"path", "read", "separator", "section", "first_wins", "reload", "settings"})
    required = frozenset({"path", "settings"})

    def build(self, params: Mapping[str, Any]) -> KvSpec:
        path = get_str(params, "path")
        if not SAFE_PATH.match(path):
            raise ParamError("path", "an absolute path of plain characters")
        read_value = params.get("read", [path])
        if not isinstance(read_value, list) or not all(
            isinstance(r, str) and SAFE_GLOB.match(r) for r in read_value
        ):
            raise ParamError("read", "a list of absolute paths or globs")
        try:
            separator = Separator(params.get("separator", "equals"))
            reload = Reload(params.get("reload", "none"))
        except ValueError:
            raise ParamError(
                "separator", "space or equals (reload: none, journald, auditd)"
            ) from None
        section = get_opt_str(params, "section")
        if section and not re.fullmatch(r"[A-Za-z]+", section):
            raise ParamError("section", "a section name like Journal")
        first_wins = params.get("first_wins", False)
        if not isinstance(first_wins, bool):
            raise ParamError("first_wins", "true or false")
        return KvSpec(
            path, tuple(read_value), separator, section, first_wins, reload, _settings(params)
        )

    def line(self, spec: KvSpec, setting: Setting) -> str:
        if setting.expect.op is Op.present and not setting.write:
            return setting.key
        if spec.separator is Separator.equals:
            return f"{setting.key} = {setting.write}"
        return f"{setting.key} {setting.write}"

    def render(self, spec: KvSpec) -> str:
        flag = "" if spec.reload is Reload.none else f" {spec.reload.value}"
        lines = []
        if spec.section:
            lines.append(
                f"[ -e {q(spec.path)} ] || gs_install_content {q(spec.path)} 0644{flag} "
                f"{heredoc(f'[{spec.section}]')}"
            )
        for setting in spec.settings:
            key_re = ere_escape(setting.key) if setting.key.isupper() else ere_nocase(setting.key)
            end = "([[:space:]]|$)" if spec.separator is Separator.space else "[[:space:]]*(=|$)"
            pattern = rf"^[[:space:]]*{key_re}{end}"
            if setting.write is None:
                lines.append(f"gs_comment_out {q(spec.path)} {q(pattern)} ''{flag}")
            else:
                lines.append(
                    f"gs_set_line {q(spec.path)} {q(pattern)} {q(self.line(spec, setting))}{flag}"
                )
        return "\n".join(lines)

    def probes(self, spec: KvSpec) -> list[Probe]:
        return [probe_files(pattern) for pattern in spec.read]

    def evaluate(self, spec: KvSpec, facts: Facts) -> Outcome:
        expected = "; ".join(f"{s.key} {s.expect.describe()}" for s in spec.settings)
        expected += (
            f" (in {spec.path})"
            if len(spec.read) == 1
            else f" (effective over {', '.join(spec.read)})"
        )
        values: dict[str, tuple[str, str]] = {}
        try:
            for pattern in spec.read:
                for path, content in file_contents(facts, pattern).items():
                    for key, value in parse_kv(content, spec.separator).items():
                        if not (spec.first_wins and key in values):
                            values[key] = (value, path)
        except FactsError as exc:
            return error(expected, str(exc))
        observed, ok = [], True
        for setting in spec.settings:
            found = values.get(setting.key)
            if found is None:
                observed.append(f"{setting.key} not set")
            elif len(spec.read) > 1:
                observed.append(f"{setting.key} {found[0] or '(flag)'} ({found[1]})")
            else:
                observed.append(f"{setting.key} {found[0] or '(flag)'}")
            ok = ok and setting.expect.test(found[0] if found else None)
        return Outcome(Status.passed if ok else Status.failed, expected, "; ".join(observed))


class FixedKv(ConfigKv):
    """A ConfigKv whose file and syntax are fixed, so controls only list settings."""

    fixed: ClassVar[Mapping[str, Any]] = {}
    keys = frozenset({"settings"})
    required = frozenset({"settings"})

    def build(self, params: Mapping[str, Any]) -> KvSpec:
        return super().build({**self.fixed, **params})


class LoginDefs(FixedKv):
    name = "login_defs"
    fixed: ClassVar[Mapping[str, Any]] = {"path": "/etc/login.defs", "separator": "space"}


class Pwquality(FixedKv):
    name = "pwquality"
    fixed: ClassVar[Mapping[str, Any]] = {
        "path": "/etc/security/pwquality.conf",
        "read": ["/etc/security/pwquality.conf", "/etc/security/pwquality.conf.d/*.conf"],
        "separator": "equals",
    }


class Faillock(FixedKv):
    name = "faillock"
    fixed: ClassVar[Mapping[str, Any]] = {
        "path": "/etc/security/faillock.conf",
        "separator": "equals",
    }


class Pwhistory(FixedKv):
    name = "pwhistory"
    fixed: ClassVar[Mapping[str, Any]] = {
        "path": "/etc/security/pwhistory.conf",
        "separator": "equals",
    }
