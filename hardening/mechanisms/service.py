"""systemd units: masked (cannot be started, even as a dependency), disabled,
or enabled and running. Enablement is what survives a reboot; activity is what
runs now; the check wants both."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from hardening.errors import FactsError, ParamError
from hardening.facts import SAFE_NAME, Facts, Probe, probe_unit, unit_state
from hardening.mechanisms.base import Mechanism, Outcome, error, get_str
from hardening.results import Status
from hardening.shell import q


class UnitState(enum.StrEnum):
    masked = "masked"
    disabled = "disabled"
    enabled = "enabled"


# is-enabled answers that mean "will not start at boot by itself".
_OFF = {"disabled", "masked", "masked-runtime", "not-found", "static", "indirect", "linked"}
_ON = {"enabled", "enabled-runtime", "static", "alias", "generated", "indirect"}


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    unit: str
    state: UnitState


class Service(Mechanism[ServiceSpec]):
    name = "service"
    phase = 70
    keys = frozenset({"unit", "state"})
    required = frozenset({"unit", "state"})

    def build(self, params: Mapping[str, Any]) -> ServiceSpec:
        unit = get_str(params, "unit")
        if not SAFE_NAME.match(unit) or "." not in unit:
            raise ParamError("unit", "a unit name like cups.service")
        try:
            state = UnitState(params["state"])
        except ValueError:
            raise ParamError("state", "masked, disabled or enabled") from None
        return ServiceSpec(unit, state)

    def render(self, spec: ServiceSpec) -> str:
        unit = q(spec.unit)
        lines = [f'state="$(systemctl is-enabled {unit} 2>/dev/null || true)"']
        if spec.state is UnitState.masked:
            lines.append(
                f'if [ "$state" != masked ]; then\n  systemctl mask {unit} >&2; gs_changed\nfi'
            )
        elif spec.state is UnitState.disabled:
            lines.append(
                'case "$state" in enabled|enabled-runtime)\n'
                f"  systemctl disable {unit} >&2; gs_changed ;;\nesac"
            )
        else:
            lines.append(
                'case "$state" in masked|masked-runtime)\n'
                f"  systemctl unmask {unit} >&2; gs_changed ;;\nesac\n"
                'case "$state" in enabled|static|alias|generated|indirect) ;;\n'
                f"  *) systemctl enable {unit} >&2; gs_changed ;;\nesac"
            )
            lines.append(
                f"if ! systemctl is-active --quiet {unit}; then\n"
                f"  systemctl start {unit}; gs_changed\nfi"
            )
            return "\n".join(lines)
        lines.append(
            f"if systemctl is-active --quiet {unit}; then systemctl stop {unit}; gs_changed; fi"
        )
        return "\n".join(lines)

    def probes(self, spec: ServiceSpec) -> list[Probe]:
        return [probe_unit(spec.unit)]

    def evaluate(self, spec: ServiceSpec, facts: Facts) -> Outcome:
        if spec.state is UnitState.enabled:
            expected = f"{spec.unit} enabled and active"
        else:
            expected = f"{spec.unit} {spec.state} and not active"
        try:
            enabled, active = unit_state(facts, spec.unit)
        except FactsError as exc:
            return error(expected, str(exc))
        observed = f"{spec.unit} {enabled}, {active}"
        running = active in ("active", "activating", "reloading")
        if spec.state is UnitState.masked:
            ok = enabled in ("masked", "masked-runtime", "not-found") and not running
        elif spec.state is UnitState.disabled:
            ok = enabled in _OFF and not running
        else:
            ok = enabled in _ON and running
        return Outcome(Status.passed if ok else Status.failed, expected, observed)
