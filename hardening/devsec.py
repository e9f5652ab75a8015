"""dev-sec's linux-baseline and ssh-baseline as facts: every control id at the
versions goldsmith is mapped to, its title, and why the ids no control covers
do not apply to a Debian server template (hardening/data/benchmarks/devsec.yaml).

The catalog names the ids under ``devsec:``; coverage is counted here the way
hardening.benchmarks counts a CIS benchmark's: covered by which controls,
waived, not applicable with its reason, or not covered.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from hardening.benchmarks import read_data
from hardening.errors import ProfileError

DEVSEC_FILE = "devsec.yaml"
BENCHMARK_ID = "devsec"
IDENT = r"[a-z]+-[0-9]+[a-z]?"
_SHOWN = f"hardening/data/benchmarks/{DEVSEC_FILE}"


@dataclasses.dataclass(frozen=True)
class Baseline:
    name: str  # linux-baseline
    version: str
    commit: str
    ids: Mapping[str, str]  # id -> title, in the baseline's order


@dataclasses.dataclass(frozen=True)
class Devsec:
    baselines: tuple[Baseline, ...]
    not_applicable: Mapping[str, str]  # id -> why it does not apply

    def ids(self) -> dict[str, tuple[Baseline, str]]:
        return {i: (b, title) for b in self.baselines for i, title in b.ids.items()}


@dataclasses.dataclass(frozen=True)
class DevsecRow:
    baseline: str
    ident: str
    title: str
    status: str  # covered | waived | not-applicable | not-covered
    controls: tuple[str, ...] = ()
    reason: str = ""


def parse_devsec(data: Any, shown: str = _SHOWN) -> Devsec:
    if not isinstance(data, Mapping) or set(data) != {"baselines", "not_applicable"}:
        raise ProfileError(shown, None, "a mapping of baselines and not_applicable")
    raw = data["baselines"]
    if not isinstance(raw, list) or not raw:
        raise ProfileError(shown, "baselines", "a list of {name, version, commit, ids}")
    baselines, seen = [], set()
    for index, entry in enumerate(raw):
        field = f"baselines[{index}]"
        if not isinstance(entry, Mapping) or set(entry) != {"name", "version", "commit", "ids"}:
            raise ProfileError(shown, field, "a mapping of name, version, commit and ids")
        ids = entry["ids"]
        if not isinstance(ids, Mapping) or not ids:
            raise ProfileError(shown, f"{field}.ids", "a mapping of control ids to titles")
        for ident, title in ids.items():
            if not isinstance(ident, str) or not re.fullmatch(IDENT, ident) or ident in seen:
                raise ProfileError(
                    shown, f"{field}.ids", "unique control ids like os-05 or sshd-48"
                )
            if not isinstance(title, str) or not title.strip():
                raise ProfileError(shown, f"{field}.ids.{ident}", "the control's title")
            seen.add(ident)
        baselines.append(
            Baseline(str(entry["name"]), str(entry["version"]), str(entry["commit"]), dict(ids))
        )
    reasons = data["not_applicable"]
    if not isinstance(reasons, Mapping):
        raise ProfileError(shown, "not_applicable", "a mapping of control ids to reasons")
    for ident, reason in reasons.items():
        if ident not in seen:
            raise ProfileError(shown, f"not_applicable.{ident}", "an id of the baselines above")
        if not isinstance(reason, str) or not reason.strip():
            raise ProfileError(shown, f"not_applicable.{ident}", "why it does not apply")
    return Devsec(tuple(baselines), {k: " ".join(v.split()) for k, v in reasons.items()})


@functools.cache
def load_devsec() -> Devsec:
    return parse_devsec(read_data(DEVSEC_FILE))


def measure_devsec(
    devsec: Devsec,
    references: Iterable[tuple[str, tuple[str, ...]]],
    *,
    waived: Mapping[str, str] | None = None,
) -> list[DevsecRow]:
    """Each id against the controls referencing it (``references``: control id,
    its devsec ids); a control under ``waived`` covers nothing in practice."""
    waived = waived or {}
    by_id: dict[str, list[str]] = {}
    for control, idents in references:
        for ident in idents:
            by_id.setdefault(ident, []).append(control)
    rows = []
    for ident, (baseline, title) in devsec.ids().items():
        controls = tuple(by_id.get(ident, ()))
        applied = [c for c in controls if c not in waived]
        if applied:
            row = DevsecRow(baseline.name, ident, title, "covered", controls)
        elif controls:
            row = DevsecRow(baseline.name, ident, title, "waived", controls, waived[controls[0]])
        elif ident in devsec.not_applicable:
            reason = devsec.not_applicable[ident]
            row = DevsecRow(baseline.name, ident, title, "not-applicable", (), reason)
        else:
            row = DevsecRow(baseline.name, ident, title, "not-covered")
        rows.append(row)
    return rows
