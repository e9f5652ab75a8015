"""Kernel parameters: the live value (/proc/sys) and the value the boot will set
(the last assignment across sysctl.d in systemd's precedence order) must both
be right; a value set only live is lost at reboot, one only persisted is not in
force yet."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from hardening.errors import FactsError, ParamError
from hardening.facts import Facts, Probe, file_contents, probe_files, split_files
from hardening.mechanisms.base import Mechanism, Outcome, Setting, error, get_settings
from hardening.results import Status
from hardening.shell import ere_escape, q

KEY = r"[a-z0-9_]+(\.[A-Za-z0-9_*-]+)+"
CONFIG_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d")

LIVE_NAME = "sysctl"
# The live values of just the keys the profile names, read from /proc/sys by
# shell builtins ("key = value" like sysctl -a, which would read every key).
_LIVE_COMMAND = (
    "for k in {items}; do p=/proc/sys/${k//.//}; "
    '[ -r "$p" ] || { printf "# %s absent\\n" "$k"; continue; }; '
    'read -r -a v <"$p" || true; printf "%s = %s\\n" "$k" "${v[*]}"; done'
)


def probe_live(keys: tuple[str, ...]) -> Probe:
    return Probe(LIVE_NAME, _LIVE_COMMAND, items=keys, isolated=False)


PERSISTED_GLOBS = (*(f"{d}/*.conf" for d in CONFIG_DIRS), "/etc/sysctl.conf")


@dataclasses.dataclass(frozen=True)
class SysctlSpec:
    settings: tuple[Setting, ...]


def parse_live(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            values[key.strip()] = " ".join(value.split())
    return values


def _order(files: dict[str, str]) -> list[str]:
    """systemd-sysctl's order: by file name, /etc masking /run masking /usr/lib;
    /etc/sysctl.conf (read by procps' sysctl --system) last."""
    chosen: dict[str, str] = {}
    for directory in CONFIG_DIRS:
        for path in files:
            head, _, base = path.rpartition("/")
            if head == directory and base not in chosen:
                chosen[base] = path
    ordered = [chosen[base] for base in sorted(chosen)]
    if "/etc/sysctl.conf" in files:
        ordered.append("/etc/sysctl.conf")
    return ordered


def parse_persisted(text: str) -> dict[str, tuple[str, str]]:
    """key -> (value, file) for the last assignment of each key."""
    return persisted_values(split_files(text))


def persisted_values(files: dict[str, str]) -> dict[str, tuple[str, str]]:
    """key -> (value, file) for the last assignment of each key, over the
    configuration files by path."""
    values: dict[str, tuple[str, str]] = {}
    for path in _order(files):
        for raw in files[path].splitlines():
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            key, sep, value = line.partition("=")
            if not sep:
                continue
            key = key.strip().lstrip("-")
            if "/" in key and "." not in key.split("/")[0]:
                key = key.replace("/", ".")
            values[key] = (" ".join(value.split()), path)
    return values


class Sysctl(Mechanism[SysctlSpec]):
    name = "sysctl"
    phase = 40
    keys = frozenset({"settings"})
    required = frozenset({"settings"})

    def build(self, params: Mapping[str, Any]) -> SysctlSpec:
        settings = []
        for field, setting in get_settings(
            params, "settings", KEY, "a sysctl name like net.ipv4.ip_forward"
        ):
            write = setting.write
            if write is not None and not re.fullmatch(r"[A-Za-z0-9 ._:/-]+", write):
                raise ParamError(f"{field}.value", "a plain value")
            settings.append(setting)
        return SysctlSpec(tuple(settings))

    def render(self, spec: SysctlSpec) -> str:
        # One call per control: every file is read once for all its keys.
        args = []
        for s in spec.settings:
            if s.write is None:
                continue
            pattern = rf"^[[:space:]]*-?{ere_escape(s.key)}[[:space:]]*="
            args.append(f"{q(s.key)} {q(s.write)} {q(pattern)}")
        return "gs_sysctl " + " \\\n  ".join(args) if args else ""

    def probes(self, spec: SysctlSpec) -> list[Probe]:
        keys = tuple(s.key for s in spec.settings)
        return [probe_live(keys), *(probe_files(g) for g in PERSISTED_GLOBS)]

    def evaluate(self, spec: SysctlSpec, facts: Facts) -> Outcome:
        expected = "; ".join(f"{s.key} {s.expect.describe()}" for s in spec.settings)
        expected += " (live and persisted)"
        try:
            live_section = facts.get(LIVE_NAME)
            live = parse_live(live_section.text)
            files: dict[str, str] = {}
            for pattern in PERSISTED_GLOBS:
                files.update(file_contents(facts, pattern))
            persisted = persisted_values(files)
        except FactsError as exc:
            return error(expected, str(exc))
        if not live_section.text.strip():
            return error(expected, "no kernel parameter was read from /proc/sys")
        observed, ok, present = [], True, 0
        for s in spec.settings:
            now = live.get(s.key)
            saved = persisted.get(s.key)
            if now is None:
                observed.append(f"{s.key}: not in this kernel")
                continue
            present += 1
            saved_text = f"persisted {saved[0]} ({saved[1]})" if saved else "persisted: not set"
            observed.append(f"{s.key}: live {now}; {saved_text}")
            ok = ok and s.expect.test(now) and saved is not None and s.expect.test(saved[0])
        if present == 0:
            return Outcome(
                Status.skipped, expected, "; ".join(observed), "the kernel has none of these keys"
            )
        return Outcome(Status.passed if ok else Status.failed, expected, "; ".join(observed))
