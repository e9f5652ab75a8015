"""SSH server options, judged from ``sshd -T`` (the configuration sshd would
really run with, after includes and defaults), never from config text."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from hardening.compare import Expect
from hardening.errors import FactsError, ParamError
from hardening.facts import Facts, Probe
from hardening.mechanisms.base import Mechanism, Outcome, error, get_mapping_list
from hardening.results import Status
from hardening.shell import ere_nocase, q

PROBE = Probe("sshd", "sshd -T 2>&1")


@dataclasses.dataclass(frozen=True)
class Option:
    key: str
    expect: Expect
    write: str | None


@dataclasses.dataclass(frozen=True)
class SshdSpec:
    options: tuple[Option, ...]


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
        for index, item in enumerate(get_mapping_list(params, "options")):
            field = f"options[{index}]"
            key = item.get("key")
            if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9]+", key):
                raise ParamError(f"{field}.key", "an sshd_config keyword like PermitRootLogin")
            unknown = set(item) - {"key", "value", "match", "write"}
            if unknown:
                raise ParamError(
                    f"{field}.{sorted(unknown)[0]}", "unknown (key, value, match, write)"
                )
            expect = Expect.parse(item, field)
            write = item.get("write")
            if isinstance(write, list):
                write_text: str | None = " ".join(str(w) for w in write)
            elif write is not None:
                write_text = str(write)
            else:
                write_text = expect.apply_value()
            if write_text is not None and ("\n" in write_text or not write_text.strip()):
                raise ParamError(f"{field}.write", "a one-line value")
            options.append(Option(key, expect, write_text))
        return SshdSpec(tuple(options))

    def render(self, spec: SshdSpec) -> str:
        lines = []
        for option in spec.options:
            if option.write is None:
                continue
            pattern = rf"^[[:space:]]*{ere_nocase(option.key)}([[:space:]]|=|$)"
            lines.append(f"gs_sshd {q(option.key)} {q(option.write)} {q(pattern)}")
        return "\n".join(lines)

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
