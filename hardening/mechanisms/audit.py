"""Audit rules: written to /etc/audit/rules.d (loaded by augenrules at boot),
checked in the running kernel (auditctl -l) and on disk. Immutable mode
(-e 2) is checked with auditctl -s, which only shows it after a fresh boot.
auditctl's -c (keep loading past a rule that fails) leaves no trace in the
kernel: it is checked where auditctl reads it, before every rule both in
rules.d, in augenrules' order, and in the audit.rules augenrules compiles."""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping
from typing import Any

from hardening.errors import FactsError, ParamError
from hardening.facts import Facts, Probe, file_contents, probe_files
from hardening.mechanisms.base import Mechanism, Outcome, error, get_bool, get_str
from hardening.results import Status
from hardening.shell import heredoc, q

LIVE_RULES = Probe("auditctl-rules", "auditctl -l 2>&1", isolated=False)
LIVE_STATUS = Probe("auditctl-status", "auditctl -s 2>&1", isolated=False)
RULES_GLOB = "/etc/audit/rules.d/*.rules"
RULES_DIR = "/etc/audit/rules.d"
COMPILED = "/etc/audit/audit.rules"  # augenrules' concatenation, what auditctl -R loads
CONTINUE = "-c"
_UNSET = {"unset", "-1", "4294967295"}


@dataclasses.dataclass(frozen=True)
class Rule:
    """A rule reduced to what auditctl -l preserves, so text and kernel compare."""

    action: str
    watch: str
    perm: str
    syscalls: frozenset[str]
    fields: frozenset[str]
    key: str

    def satisfied_by(self, other: Rule) -> bool:
        return (
            self.action == other.action
            and self.watch == other.watch
            and self.perm == other.perm
            and self.fields == other.fields
            and self.key == other.key
            and self.syscalls <= other.syscalls
        )


def normalise(text: str) -> Rule | None:
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    if not words or words[0] not in ("-a", "-w"):
        return None
    action, watch, perm, key = "", "", "", ""
    syscalls: set[str] = set()
    fields: set[str] = set()
    it = iter(words)
    for flag in it:
        value = next(it, "")
        if flag == "-a":
            action = ",".join(sorted(value.split(",")))
        elif flag == "-w":
            watch = value.rstrip("/") or "/"
        elif flag == "-p":
            perm = "".join(sorted(value))
        elif flag == "-S":
            syscalls.update(s for s in value.split(",") if s != "all")
        elif flag == "-k":
            key = value
        elif flag in ("-F", "-C"):
            match = re.fullmatch(r"([a-z_0-9]+)(!=|>=|<=|=|>|<|&=|&)(.*)", value)
            if not match:
                fields.add(value)
                continue
            name, op, arg = match.groups()
            if name == "key":
                key = arg
            elif name in ("path", "dir") and not syscalls and not watch:
                watch = arg.rstrip("/") or "/"
            elif name == "perm":
                perm = "".join(sorted(arg))
            elif flag == "-C" and op in ("=", "!="):
                # The kernel keeps a comparison in its own order: auditctl -l
                # shows "-C euid!=uid" as "-C uid!=euid". (In)equality is
                # symmetric, so both read the same.
                first, second = sorted((name, arg))
                fields.add(f"{flag}{first}{op}{second}")
            else:
                if name in ("auid", "uid", "euid") and arg in _UNSET:
                    arg = "-1"
                fields.add(f"{flag}{name}{op}{arg}")
    if watch:
        # "-w P -p wa" and "-a always,exit -F path=P -F perm=wa" are the same rule.
        action = action or "always,exit"
    return Rule(action, watch, perm, frozenset(syscalls), frozenset(fields), key)


def continues_before_rules(lines: list[str]) -> bool:
    """Whether a -c line comes before the first rule (-a or -w): auditctl
    reads the file in order, and -c changes only what follows it."""
    for line in lines:
        text = line.strip()
        if text == CONTINUE:
            return True
        if normalise(text) is not None:
            return False
    return False


def augenrules_order(path: str) -> list[str | int]:
    """augenrules concatenates rules.d in ls -v's natural order (50-x before 100-x)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path)]


@dataclasses.dataclass(frozen=True)
class AuditSpec:
    file: str  # rules.d file name without directory or suffix
    rules: tuple[str, ...]
    immutable: bool
    continue_loading: bool = False  # -c first: rules after a failing one still load


class AuditRules(Mechanism[AuditSpec]):
    name = "audit"
    phase = 75
    keys = frozenset({"file", "rules", "immutable", "continue_loading"})
    required = frozenset({"file"})

    def build(self, params: Mapping[str, Any]) -> AuditSpec:
        file = get_str(params, "file", r"[0-9]{2}-[a-z0-9-]+")
        rules = params.get("rules", [])
        immutable = get_bool(params, "immutable", False)
        continue_loading = get_bool(params, "continue_loading", False)
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise ParamError("rules", "a list of audit rules")
        for index, rule in enumerate(rules):
            if "\n" in rule or normalise(rule) is None:
                raise ParamError(f"rules[{index}]", "an auditctl rule starting with -a or -w")
        if not rules and not immutable and not continue_loading:
            raise ParamError(
                "rules", "at least one rule (or immutable: true, or continue_loading: true)"
            )
        return AuditSpec(file, tuple(rules), immutable, continue_loading)

    def render(self, spec: AuditSpec) -> str:
        lines = [f"# goldsmith: {spec.file}"]
        if spec.continue_loading:
            lines.append(CONTINUE)
        lines.extend(spec.rules)
        if spec.immutable:
            lines.append("-e 2")
        path = f"{RULES_DIR}/{spec.file}.rules"
        return f"gs_install_content {q(path)} 0640 audit {heredoc(chr(10).join(lines))}"

    def probes(self, spec: AuditSpec) -> list[Probe]:
        probes = [probe_files(RULES_GLOB)]
        if spec.continue_loading:
            probes.append(probe_files(COMPILED))
        if spec.immutable:
            probes.append(LIVE_STATUS)
        if spec.rules:
            probes.append(LIVE_RULES)
        return probes

    def evaluate(self, spec: AuditSpec, facts: Facts) -> Outcome:
        parts = []
        if spec.rules:
            parts.append(f"{len(spec.rules)} rule(s) loaded and in {RULES_DIR}")
        if spec.immutable:
            parts.append("rules immutable (-e 2) in the running kernel and last on disk")
        if spec.continue_loading:
            parts.append(f"{CONTINUE} before every rule in {RULES_DIR} and in {COMPILED}")
        expected = "; ".join(parts)
        try:
            files = file_contents(facts, RULES_GLOB)
            compiled = file_contents(facts, COMPILED) if spec.continue_loading else {}
        except FactsError as exc:
            return error(expected, str(exc))
        disk: list[Rule] = []
        disk_lines: list[str] = []
        for path in sorted(files, key=augenrules_order):
            for line in files[path].splitlines():
                disk_lines.append(line.strip())
                rule = normalise(line.strip())
                if rule:
                    disk.append(rule)
        observed, ok = [], True
        if spec.rules:
            try:
                live_section = facts.get(LIVE_RULES.name)
            except FactsError as exc:
                return error(expected, str(exc))
            if live_section.rc != 0:
                return error(expected, "auditctl -l failed: " + live_section.text.strip()[:120])
            live = [r for r in (normalise(x) for x in live_section.text.splitlines()) if r]
            wanted = [normalise(r) for r in spec.rules]
            missing_live = [
                t
                for t, w in zip(spec.rules, wanted, strict=True)
                if w and not any(w.satisfied_by(r) for r in live)
            ]
            missing_disk = [
                t
                for t, w in zip(spec.rules, wanted, strict=True)
                if w and not any(w.satisfied_by(r) for r in disk)
            ]
            observed.append(f"loaded {len(spec.rules) - len(missing_live)}/{len(spec.rules)}")
            observed.append(f"on disk {len(spec.rules) - len(missing_disk)}/{len(spec.rules)}")
            if missing_live or missing_disk:
                observed.append("first missing: " + (missing_live or missing_disk)[0])
                ok = False
        if spec.immutable:
            try:
                status_text = facts.text(LIVE_STATUS.name)
            except FactsError as exc:
                return error(expected, str(exc))
            enabled = re.search(r"^enabled (\d)", status_text, re.MULTILINE)
            if enabled is None:
                return error(expected, "auditctl -s unreadable: " + status_text.strip()[:120])
            control_lines = [line for line in disk_lines if line.startswith("-e ")]
            last = control_lines[-1] if control_lines else "none"
            observed.append(f"running enabled {enabled.group(1)}; last -e on disk: {last}")
            ok = ok and enabled.group(1) == "2" and last == "-e 2"
        if spec.continue_loading:
            in_dir = continues_before_rules(disk_lines)
            text = compiled.get(COMPILED)
            in_compiled = text is not None and continues_before_rules(text.splitlines())
            shown = {True: "yes", False: "no"}
            observed.append(
                f"{CONTINUE} before the rules: {RULES_DIR} {shown[in_dir]}, "
                f"{COMPILED} {shown[in_compiled] if text is not None else 'missing'}"
            )
            ok = ok and in_dir and in_compiled
        return Outcome(Status.passed if ok else Status.failed, expected, "; ".join(observed))
