"""SSH server options, judged from ``sshd -T`` (the configuration sshd would
really run with, after includes and defaults), never from config text."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from hardening.errors import FactsError, ParamError
from hardening.facts import Facts, Probe
from hardening.mechanisms.base import Mechanism, Outcome, Setting, error, get_settings
from hardening.results import Status
from hardening.shell import ere_nocase, q

PROBE = Probe("sshd", "sshd -T 2>&1", isolated=False)


@dataclasses.dataclass(frozen=True)
class SshdSpec:
    options: tuple[Setting, ...]


def parse_sshd_t(text: str) -> dict[str, str]:
    """keyword (lower case) -> value; repeated keywords are joined with commas."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if not key or not re.fullmatch(r"[a-z0-9]+", key):
            continue
        value = value.strip()
        values[key] = f"{values[key]},{value}" if key in values else value
    return values


class Sshd(Mechanism[SshdSpec]):
    name = "sshd"
    phase = 60
    keys = frozenset({"options"})
    required = frozenset({"options"})

    def build(self, params: Mapping[str, Any]) -> SshdSpec:
        options = []
        for field, option in get_settings(
            params,
            "options",
            r"[A-Za-z0-9]+",
            "an sshd_config keyword like PermitRootLogin",
            join_list_write=True,
        ):
            if option.write is not None and ("\n" in option.write or not option.write.strip()):
                raise ParamError(f"{field}.write", "a one-line value")
            options.append(option)
        return SshdSpec(tuple(options))

    def render(self, spec: SshdSpec) -> str:
        # One call per control: every file is read once for all its options.
        args = []
        for option in spec.options:
            if option.write is None:
                continue
            pattern = rf"^[[:space:]]*{ere_nocase(option.key)}([[:space:]]|=|$)"
            args.append(f"{q(option.key)} {q(option.write)} {q(pattern)}")
        return "gs_sshd " + " \\\n  ".join(args) if args else ""

    def probes(self, spec: SshdSpec) -> list[Probe]:
        return [PROBE]

    def evaluate(self, spec: SshdSpec, facts: Facts) -> Outcome:
        expected = "sshd -T: " + "; ".join(
            f"{o.key.lower()} {o.expect.describe()}" for o in spec.options
        )
        try:
            section = facts.get(PROBE.name)
        except FactsError as exc:
            return error(expected, str(exc))
        if section.rc != 0:
            first = section.text.strip().splitlines()[:1] or ["no output"]
            return error(expected, f"sshd -T failed (rc {section.rc}): {first[0]}")
        effective = parse_sshd_t(section.text)
        observed, ok = [], True
        for option in spec.options:
            value = effective.get(option.key.lower())
            observed.append(f"{option.key.lower()} {value if value is not None else '(not set)'}")
            ok = ok and option.expect.test(value)
        return Outcome(Status.passed if ok else Status.failed, expected, "; ".join(observed))
