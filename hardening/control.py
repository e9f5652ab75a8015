"""A control of the catalog, as loaded: its references (CIS, dev-sec, ANSSI,
other standards), the condition it applies under, the files of a profile's
own code, and the record itself.

A control's mechanism parameters may name tunables as ``${name}``; the control
declares each tunable under ``parameters`` with its type and default
(``su_group: {type: name, default: sugroup}``, types in
hardening.mechanisms.parameters) and a profile may override it with a value of
that type.

Resolving a control is the one place values meet mechanism parameters
(:meth:`Control.resolve_params`): keys holding bash (a mechanism's
``code_keys``) keep their ``${name}`` as a shell expansion and get the values as
variables; every other key gets the checked values in place.
hardening.control_reader reads a control from YAML, hardening.catalog the files
of controls goldsmith ships.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from typing import Any

from hardening.benchmarks import known_releases, load_benchmarks
from hardening.errors import ParamError
from hardening.mechanisms import MECHANISMS
from hardening.mechanisms.parameters import NAME, VARIABLES, ParamSpec, as_text

# ANSSI's "Configuration recommendations of a GNU/Linux system" numbers its
# recommendations R1 to R80.
ANSSI_NAME = "ANSSI BP-028 v2.0"
_REF = re.compile(r"\$\{(" + NAME + r")\}")


class Severity(enum.StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


@dataclasses.dataclass(frozen=True)
class CisReference:
    """What a control satisfies in one CIS benchmark (hardening.benchmarks)."""

    benchmark: str  # its key: debian12, debian13
    items: tuple[str, ...]  # recommendation numbers
    level: int  # the Server profile level (1 or 2) that asks for the control there

    def name(self) -> str:
        return load_benchmarks()[self.benchmark].name

    def release(self) -> str:
        return load_benchmarks()[self.benchmark].release


@dataclasses.dataclass(frozen=True)
class References:
    cis: tuple[CisReference, ...] = ()  # one per benchmark, in benchmark order
    devsec: tuple[str, ...] = ()  # dev-sec linux-baseline / ssh-baseline control ids
    # ANSSI BP-028 v2.0 recommendations it satisfies ("R12"), whatever their level.
    anssi: tuple[str, ...] = ()
    no_reference_reason: str = ""
    # Any other standard, by name: (("acme", ("WEB-7",)),), shown "acme WEB-7".
    other: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def cis_level(self) -> int | None:
        """The lowest level any benchmark asks for the control at (None without CIS)."""
        return min((ref.level for ref in self.cis), default=None)

    def cis_on(self, benchmark: str) -> CisReference | None:
        return next((ref for ref in self.cis if ref.benchmark == benchmark), None)

    def level_on(self, release: str) -> int | None:
        """The CIS level that asks for the control on ``release``: its level in
        that release's benchmark; where that benchmark has no item for it, its
        lowest level elsewhere (goldsmith keeps a release's hardening alike
        where one benchmark is silent, as CIS Debian 13 is about nftables)."""
        for ref in self.cis:
            if ref.release() == release:
                return ref.level
        return self.cis_level

    def strings(self, release: str | None = None) -> tuple[str, ...]:
        """Every reference as text ("CIS Debian 12 v1.1.0 5.1.20 (L1)"); with
        ``release``, CIS items of that release's benchmark only (all of them
        for a release no benchmark is written for)."""
        refs = self.cis
        if release is not None and release in known_releases():
            refs = tuple(ref for ref in refs if ref.release() == release)
        out = [f"{ref.name()} {number} (L{ref.level})" for ref in refs for number in ref.items]
        out += [f"dev-sec {ident}" for ident in self.devsec]
        out += [f"{ANSSI_NAME} {ident}" for ident in self.anssi]
        out += [f"{source} {ident}" for source, idents in self.other for ident in idents]
        return tuple(out)


@dataclasses.dataclass(frozen=True)
class Condition:
    """When a control applies: a package is installed, or a parameter is non-empty."""

    installed: str = ""
    param_set: str = ""

    def describe(self) -> str:
        if self.installed:
            return f"package {self.installed} is not installed"
        return f"parameter {self.param_set} is not set"


@dataclasses.dataclass(frozen=True)
class CodeFile:
    """A file beside a profile holding one of its control's code keys."""

    key: str  # the mechanism parameter it fills: apply or check
    path: str  # relative to the profile's folder, as the profile names it
    sha256: str  # of its bytes


@dataclasses.dataclass(frozen=True)
class Control:
    id: str
    title: str
    area: str
    rationale: str
    severity: Severity
    references: References
    mechanism: str
    params: Mapping[str, Any]  # mechanism parameters, ${name} references unresolved
    parameter_types: Mapping[str, ParamSpec]  # tunables this control reads, typed
    only_if: Condition | None = None
    source: str = ""  # the catalog file it came from
    # Packages the control's apply and check rely on (cron for cron.service);
    # the apply script installs them before any control runs.
    needs: tuple[str, ...] = ()
    # When it is applied, overriding its mechanism's phase (0-99); from
    # hardening.apply.AFTER_RELOADS on, after sysctl, grub, sshd ... reloads.
    phase: int | None = None
    # Code keys read from files beside the profile (a profile's own controls).
    files: tuple[CodeFile, ...] = ()
    # The Debian releases ("12", "13") it applies to, and why only those; none:
    # every release. Elsewhere it is reported not applicable, never dropped.
    releases: tuple[str, ...] = ()
    releases_reason: str = ""

    @property
    def custom(self) -> bool:
        """Defined by a profile rather than shipped."""
        return "." in self.id

    @property
    def parameters(self) -> Mapping[str, Any]:
        """Each tunable's default."""
        return {name: spec.default for name, spec in self.parameter_types.items()}

    def resolve_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The mechanism parameters for ``values`` (defaults where missing).

        Every value is checked against its declared type here, whoever
        produced it. Keys holding bash keep their ``${name}`` references, and
        the values they read travel under VARIABLES, to be assigned as quoted
        shell variables; in every other key each ${name} is replaced.
        """
        merged: dict[str, Any] = {}
        for name, spec in self.parameter_types.items():
            try:
                merged[name] = spec.check(values.get(name, spec.default))
            except ParamError as exc:
                raise ParamError(f"{VARIABLES}.{name}", exc.expected) from None
        code_keys = MECHANISMS[self.mechanism].code_keys
        resolved: dict[str, Any] = {}
        code = []
        for key, value in self.params.items():
            if key in code_keys:
                resolved[key] = value
                code.append(value)
            else:
                resolved[key] = substitute(value, merged)
        if code_keys:
            # Any expansion counts: "${name}" and also ${name//,/ } or $name.
            resolved[VARIABLES] = {
                name: value
                for name, value in sorted(merged.items())
                if any(re.search(rf"\$\{{?{name}\b", str(text)) for text in code)
            }
        return resolved


def substitute(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:
            return values[whole.group(1)]

        def text(match: re.Match[str]) -> str:
            return as_text(values[match.group(1)])

        return _REF.sub(text, value)
    if isinstance(value, Mapping):
        return {k: substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    return value


def references_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_REF.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(references_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(references_in(v) for v in value)) if value else set()
    return set()
