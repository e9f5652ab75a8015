"""Packages that must be installed (auditd, aide ...) or must not be (servers
nobody asked for). The check reads dpkg's own database."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from hardening.errors import FactsError
from hardening.facts import PACKAGES, Facts, Probe, installed_packages
from hardening.mechanisms.base import Mechanism, Outcome, error, get_str_list
from hardening.results import Status
from hardening.shell import q

NAME = r"[a-z0-9][a-z0-9+.-]+"


@dataclasses.dataclass(frozen=True)
class PackagesSpec:
    packages: tuple[str, ...]


class PackageAbsent(Mechanism[PackagesSpec]):
    name = "package_absent"
    phase = 10
    keys = frozenset({"packages"})
    required = frozenset({"packages"})

    def build(self, params: Mapping[str, Any]) -> PackagesSpec:
        return PackagesSpec(get_str_list(params, "packages", NAME))

    def render(self, spec: PackagesSpec) -> str:
        return "gs_pkg_absent " + " ".join(q(p) for p in spec.packages)

    def probes(self, spec: PackagesSpec) -> list[Probe]:
        return [PACKAGES]

    def evaluate(self, spec: PackagesSpec, facts: Facts) -> Outcome:
        expected = "not installed: " + ", ".join(spec.packages)
        try:
            installed = installed_packages(facts)
        except FactsError as exc:
            return error(expected, str(exc))
        found = [f"{p} {installed[p]}" for p in spec.packages if p in installed]
        observed = "installed: " + ", ".join(found) if found else "none installed"
        return Outcome(Status.failed if found else Status.passed, expected, observed)


class PackagePresent(Mechanism[PackagesSpec]):
    name = "package_present"
    phase = 20
    keys = frozenset({"packages"})
    required = frozenset({"packages"})

    def build(self, params: Mapping[str, Any]) -> PackagesSpec:
        return PackagesSpec(get_str_list(params, "packages", NAME))

    def render(self, spec: PackagesSpec) -> str:
        return "gs_pkg_present " + " ".join(q(p) for p in spec.packages)

    def probes(self, spec: PackagesSpec) -> list[Probe]:
        return [PACKAGES]

    def evaluate(self, spec: PackagesSpec, facts: Facts) -> Outcome:
        expected = "installed: " + ", ".join(spec.packages)
        try:
            installed = installed_packages(facts)
        except FactsError as exc:
            return error(expected, str(exc))
        missing = [p for p in spec.packages if p not in installed]
        if missing:
            return Outcome(Status.failed, expected, "missing: " + ", ".join(missing))
        return Outcome(
            Status.passed, expected, ", ".join(f"{p} {installed[p]}" for p in spec.packages)
        )
