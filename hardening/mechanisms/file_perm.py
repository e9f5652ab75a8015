"""A file's (or every globbed file's) mode, owner and group: the mode may not
exceed a maximum, owner and group must be among the allowed ones."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from hardening.errors import FactsError, ParamError
from hardening.facts import SAFE_GLOB, Facts, Probe, probe_stat, stat_lines
from hardening.mechanisms.base import Mechanism, Outcome, error, get_bool, get_str, get_str_list
from hardening.results import Status
from hardening.shell import q

ACCOUNT = r"[a-z_][a-z0-9_-]*"


@dataclasses.dataclass(frozen=True)
class FilePermSpec:
    path: str  # a path or a glob
    max_mode: int
    owners: tuple[str, ...]
    groups: tuple[str, ...]
    missing_ok: bool
    create: bool  # create an empty file when missing (e.g. /etc/cron.allow)

    @property
    def is_glob(self) -> bool:
        return any(c in self.path for c in "*?[")


@dataclasses.dataclass(frozen=True)
class StatLine:
    mode: int
    owner: str
    group: str
    kind: str
    path: str


def parse_stat(text: str) -> list[StatLine]:
    out = []
    for line in text.splitlines():
        fields = line.split("|", 4)
        if len(fields) != 5:
            continue
        try:
            mode = int(fields[0], 8)
        except ValueError:
            continue
        out.append(StatLine(mode, fields[1], fields[2], fields[3], fields[4]))
    return out


class FilePerm(Mechanism[FilePermSpec]):
    name = "file_perm"
    phase = 80
    keys = frozenset({"path", "max_mode", "owner", "group", "missing_ok", "create"})
    required = frozenset({"path", "max_mode"})

    def build(self, params: Mapping[str, Any]) -> FilePermSpec:
        path = get_str(params, "path")
        if not SAFE_GLOB.match(path):
            raise ParamError("path", "an absolute path or glob of plain characters")
        mode_text = params.get("max_mode")
        if not isinstance(mode_text, str) or not re.fullmatch(r"0?[0-7]{3,4}", mode_text):
            raise ParamError("max_mode", 'an octal mode as a string, e.g. "0640"')
        owners = get_str_list(params, "owner", ACCOUNT) if "owner" in params else ("root",)
        groups = get_str_list(params, "group", ACCOUNT) if "group" in params else ("root",)
        create = get_bool(params, "create", False)
        spec = FilePermSpec(
            path, int(mode_text, 8), owners, groups, get_bool(params, "missing_ok", False), create
        )
        if create and spec.is_glob:
            raise ParamError("create", "only for a single path, not a glob")
        return spec

    def render(self, spec: FilePermSpec) -> str:
        mode = f"{spec.max_mode:04o}"
        lines = []
        if spec.create:
            lines.append(
                f"if [ ! -e {q(spec.path)} ]; then install -m {mode} -o {q(spec.owners[0])}"
                f" -g {q(spec.groups[0])} /dev/null {q(spec.path)}; gs_changed; fi"
            )
        # Owner and group are corrected only when not already among the allowed ones.
        allowed_owner = "|".join(spec.owners)
        allowed_group = "|".join(spec.groups)
        # A glob loops over what it matches; one path needs no loop (shellcheck's
        # SC2043: a loop over one word is usually a quoting mistake).
        if spec.is_glob:
            head, tail = f'for f in {spec.path}; do [ -e "$f" ] || continue', "done"
        else:
            head, tail = f'f={q(spec.path)}; if [ -e "$f" ]; then', "fi"
        lines.append(
            f"{head}\n"
            f'  case "$(stat -L -c %U -- "$f")" in {allowed_owner}) o="" ;;\n'
            f"    *) o={q(spec.owners[0])} ;; esac\n"
            f'  case "$(stat -L -c %G -- "$f")" in {allowed_group}) g="" ;;\n'
            f"    *) g={q(spec.groups[0])} ;; esac\n"
            f'  gs_fix_mode "$f" {mode} "$o" "$g"\n'
            f"{tail}"
        )
        return "\n".join(lines)

    def probes(self, spec: FilePermSpec) -> list[Probe]:
        return [probe_stat(spec.path)]

    def evaluate(self, spec: FilePermSpec, facts: Facts) -> Outcome:
        expected = (
            f"{spec.path}: mode <= {spec.max_mode:04o}, owner {'|'.join(spec.owners)}, "
            f"group {'|'.join(spec.groups)}"
        )
        try:
            stats = parse_stat("\n".join(stat_lines(facts, spec.path)))
        except FactsError as exc:
            return error(expected, str(exc))
        if not stats:
            if spec.missing_ok:
                return Outcome(Status.passed, expected, "no such file (allowed)")
            return Outcome(Status.failed, expected, "no such file")
        bad = [
            s
            for s in stats
            if s.mode & ~spec.max_mode & 0o7777
            or s.owner not in spec.owners
            or s.group not in spec.groups
        ]
        shown = bad or stats
        observed = "; ".join(f"{s.path} {s.mode:04o} {s.owner}:{s.group}" for s in shown[:5])
        if len(shown) > 5:
            observed += f"; and {len(shown) - 5} more"
        return Outcome(Status.failed if bad else Status.passed, expected, observed)
