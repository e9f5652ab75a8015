"""The escape hatch: a control that fits no mechanism carries its own apply
shell (which calls gs_changed when it changes something) and a check command
whose exit status and output decide. A check may say the control does not
apply to this system: it exits with the control's ``not_applicable_exit``
status, printing why, and the result is skipped with that reason (never a
pass: a check that finds nothing to judge must not prove anything).

Both are bash written in the catalog. Parameters reach them only as shell
variables: ``su_group='sugroup'`` is assigned ahead of the code, which reads
``"${su_group}"``. A value is never spliced into the code's text."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from hardening.errors import FactsError, ParamError
from hardening.facts import Facts, Probe
from hardening.mechanisms.base import Mechanism, Outcome, error, get_opt_str, get_str
from hardening.mechanisms.parameters import NAME, VARIABLES, shell_assignments
from hardening.results import Status


class PassIf(enum.StrEnum):
    rc0 = "rc0"  # the check command exits 0
    empty = "empty"  # prints nothing (a list of offenders that should be empty)
    rc0_empty = "rc0_empty"
    matches = "matches"  # stdout matches the regular expression in ``pattern``


@dataclasses.dataclass(frozen=True)
class ScriptSpec:
    apply: str
    check: str
    pass_if: PassIf
    pattern: str
    expected: str
    variables: tuple[tuple[str, Any], ...] = ()  # (parameter name, checked value)
    not_applicable_exit: int | None = None  # the check's exit status for "does not apply here"

    def variables_read(self, code: str) -> dict[str, Any]:
        """The variables ``code`` reads: a value one of the control's pieces of
        code never reads is not assigned for it (shellcheck's SC2034)."""
        # The same test as Control.resolve_params: any expansion of the name.
        return {n: v for n, v in self.variables if re.search(rf"\$\{{?{n}\b", code)}

    def assignments(self, code: str) -> str:
        return shell_assignments(self.variables_read(code))

    @property
    def probe_command(self) -> str:
        return self.assignments(self.check) + self.check

    @property
    def probe_name(self) -> str:
        # Named by everything it runs: the same check with other values is
        # another probe; without variables the name is the check's alone.
        return "script:" + hashlib.sha256(self.probe_command.encode()).hexdigest()[:16]


class Script(Mechanism[ScriptSpec]):
    name = "script"
    phase = 85
    keys = frozenset(
        {"apply", "check", "pass_if", "pattern", "expected", "not_applicable_exit", VARIABLES}
    )
    required = frozenset({"check", "expected"})
    code_keys = frozenset({"apply", "check"})

    def build(self, params: Mapping[str, Any]) -> ScriptSpec:
        try:
            pass_if = PassIf(params.get("pass_if", "rc0"))
        except ValueError:
            raise ParamError("pass_if", "rc0, empty, rc0_empty or matches") from None
        pattern = get_opt_str(params, "pattern")
        if pass_if is PassIf.matches:
            if not pattern:
                raise ParamError("pattern", "a regular expression for pass_if: matches")
            try:
                re.compile(pattern)
            except (re.error, OverflowError, RecursionError):
                # re raises these too: a{99999999999} (OverflowError), a
                # thousand nested groups (RecursionError).
                raise ParamError("pattern", "a valid regular expression") from None
        not_applicable = params.get("not_applicable_exit")
        if not_applicable is not None and (
            not isinstance(not_applicable, int)
            or isinstance(not_applicable, bool)
            or not 2 <= not_applicable <= 125
        ):
            # 0 and 1 are a check's verdicts; above 125 the shell's own.
            raise ParamError("not_applicable_exit", "an exit status from 2 to 125")
        return ScriptSpec(
            apply=get_opt_str(params, "apply"),
            check=get_str(params, "check"),
            pass_if=pass_if,
            pattern=pattern,
            expected=" ".join(get_str(params, "expected").split()),
            variables=_variables(params),
            not_applicable_exit=not_applicable,
        )

    def render(self, spec: ScriptSpec) -> str:
        code = spec.apply.strip()
        read = spec.variables_read(code)
        if not code or not read:
            return code
        # Unset afterwards: the next control's code sees only its own values.
        return f"{shell_assignments(read)}{code}\nunset {' '.join(read)}"

    def probes(self, spec: ScriptSpec) -> list[Probe]:
        # A probe runs in its own subshell, so its variables end with it.
        return [Probe(spec.probe_name, spec.probe_command)]

    def evaluate(self, spec: ScriptSpec, facts: Facts) -> Outcome:
        try:
            section = facts.get(spec.probe_name)
        except FactsError as exc:
            return error(spec.expected, str(exc))
        text = section.text.strip()
        if spec.not_applicable_exit is not None and section.rc == spec.not_applicable_exit:
            why = text.splitlines()[0][:200] if text else "the check found nothing to judge"
            return Outcome(Status.skipped, spec.expected, text[:200], f"not applicable: {why}")
        shown = " | ".join(text.splitlines()[:3])
        if len(shown) > 200:
            shown = shown[:197] + "..."
        count = len(text.splitlines())
        if spec.pass_if is PassIf.rc0:
            ok = section.rc == 0
        elif spec.pass_if is PassIf.empty:
            ok = not text
        elif spec.pass_if is PassIf.rc0_empty:
            ok = section.rc == 0 and not text
        else:
            ok = re.search(spec.pattern, section.text, re.MULTILINE) is not None
        if spec.pass_if in (PassIf.empty, PassIf.rc0_empty) and text:
            observed = f"{count} found: {shown}"
        else:
            observed = shown or "(no output)"
        if spec.pass_if in (PassIf.rc0, PassIf.rc0_empty):
            observed += f" (rc {section.rc})"
        return Outcome(Status.passed if ok else Status.failed, spec.expected, observed)


def _variables(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    value = params.get(VARIABLES, {})
    if not isinstance(value, Mapping):
        raise ParamError(VARIABLES, "a mapping of parameter names to values")
    out = []
    for name, item in sorted(value.items()):
        if not isinstance(name, str) or not re.fullmatch(NAME, name):
            raise ParamError(f"{VARIABLES}.{name}", "a parameter name like su_group")
        if not isinstance(item, str | int | list) or isinstance(item, bool):
            raise ParamError(f"{VARIABLES}.{name}", "a checked parameter value")
        out.append((name, tuple(item) if isinstance(item, list) else item))
    return tuple(out)
