"""The CIS benchmarks the catalog is mapped to, as facts: every recommendation's
number, server and workstation level, assessment status and title
(hardening/data/benchmarks/cis-debian12.yaml, cis-debian13.yaml), and
goldsmith's own choices among their alternatives (choices.yaml).

A benchmark belongs to one Debian release. The catalog names its items under
the benchmark's key (``cis: {debian12: [...], debian13: [...]}``), so a control
can say what it satisfies on each release, and coverage can be counted per
benchmark and level.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from hardening.errors import ProfileError
from hardening.strictdata import DataError, loads_yaml, read_regular

NUMBER = r"\d+(\.\d+)+"
# key -> (file, id): the key is what the catalog writes under cis:, the id what
# people type (goldsmith controls coverage --benchmark cis-debian13).
BENCHMARK_FILES = {"debian12": "cis-debian12.yaml", "debian13": "cis-debian13.yaml"}
CHOICES_FILE = "choices.yaml"


class Assessment(enum.StrEnum):
    automated = "automated"
    manual = "manual"


@dataclasses.dataclass(frozen=True)
class Item:
    number: str
    server: int | None  # level in the Server profile; None where it leaves the item out
    workstation: int | None
    assessment: Assessment
    title: str


@dataclasses.dataclass(frozen=True)
class Benchmark:
    key: str  # debian13: the catalog's key under cis:
    id: str  # cis-debian13
    title: str  # CIS Debian Linux 13 Benchmark
    version: str  # 1.0.0
    release: str  # the Debian major release it is written for: "13"
    items: Mapping[str, Item]
    # goldsmith's choices: a number prefix -> why its items are left out
    choices: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        """How references name it: CIS Debian 13 v1.0.0."""
        return f"CIS Debian {self.release} v{self.version}"

    def choice(self, number: str) -> str | None:
        """Why goldsmith leaves ``number`` out on purpose, or None."""
        best = ""
        for prefix in self.choices:
            if (number == prefix or number.startswith(prefix + ".")) and len(prefix) > len(best):
                best = prefix
        return self.choices[best] if best else None

    def server_items(self, level: int) -> list[Item]:
        """The recommendations of the Server profile at ``level`` (level 2 includes level 1)."""
        return [i for i in self.items.values() if i.server is not None and i.server <= level]


def _data_dir() -> Path:
    return Path(str(resources.files("hardening") / "data" / "benchmarks"))


def read_data(name: str) -> Any:
    path = _data_dir() / name
    shown = f"hardening/data/benchmarks/{name}"
    try:
        return loads_yaml(read_regular(path))
    except (OSError, DataError) as exc:
        raise ProfileError(shown, None, str(exc)) from None


def _level(value: Any, shown: str, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or value not in (1, 2):
        raise ProfileError(shown, field, "1, 2 or null")
    return int(value)


def parse_benchmark(key: str, data: Any, choices: Mapping[str, str], shown: str) -> Benchmark:
    if not isinstance(data, Mapping) or set(data) != {"id", "title", "version", "release", "items"}:
        raise ProfileError(shown, None, "a mapping of id, title, version, release and items")
    items: dict[str, Item] = {}
    raw_items = data["items"]
    if not isinstance(raw_items, Mapping) or not raw_items:
        raise ProfileError(shown, "items", "a mapping of recommendation numbers")
    for number, row in raw_items.items():
        field = f"items.{number}"
        if not isinstance(number, str) or not re.fullmatch(NUMBER, number):
            raise ProfileError(shown, field, "a recommendation number like 1.1.1.1")
        if not isinstance(row, list) or len(row) != 4:
            raise ProfileError(shown, field, "[server level, workstation level, assessment, title]")
        server, workstation, assessment, title = row
        if assessment not in ("automated", "manual") or not isinstance(title, str):
            raise ProfileError(shown, field, "automated or manual, then the title")
        items[number] = Item(
            number,
            _level(server, shown, field),
            _level(workstation, shown, field),
            Assessment(assessment),
            title,
        )
    for prefix in choices:
        if not any(n == prefix or n.startswith(prefix + ".") for n in items):
            raise ProfileError(f"hardening/data/benchmarks/{CHOICES_FILE}", prefix, "an item")
    return Benchmark(
        key=key,
        id=str(data["id"]),
        title=str(data["title"]),
        version=str(data["version"]),
        release=str(data["release"]),
        items=items,
        choices=dict(choices),
    )


@functools.cache
def load_benchmarks() -> dict[str, Benchmark]:
    """Every benchmark goldsmith maps, by catalog key, oldest release first."""
    choices = read_data(CHOICES_FILE)
    if not isinstance(choices, Mapping):
        raise ProfileError(f"hardening/data/benchmarks/{CHOICES_FILE}", None, "a mapping")
    out = {}
    for key, name in BENCHMARK_FILES.items():
        data = read_data(name)
        ident = data.get("id") if isinstance(data, Mapping) else None
        mine = choices.get(ident, {}) or {}
        if not isinstance(mine, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mine.items()
        ):
            raise ProfileError(CHOICES_FILE, str(ident), "a mapping of number prefixes to reasons")
        out[key] = parse_benchmark(key, data, mine, f"hardening/data/benchmarks/{name}")
    return out


def known_releases() -> tuple[str, ...]:
    """The Debian releases a benchmark is mapped for: "12", "13"."""
    return tuple(b.release for b in load_benchmarks().values())


def benchmark_for_release(release: str | None) -> Benchmark | None:
    for benchmark in load_benchmarks().values():
        if benchmark.release == release:
            return benchmark
    return None


def benchmark_by_id(ident: str) -> Benchmark | None:
    """cis-debian13 (or its catalog key, debian13)."""
    for benchmark in load_benchmarks().values():
        if ident in (benchmark.id, benchmark.key):
            return benchmark
    return None


@dataclasses.dataclass(frozen=True)
class ItemCoverage:
    item: Item
    status: str  # covered | waived | not-applied | choice | manual | not-covered
    controls: tuple[str, ...] = ()  # the controls referencing it
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class Coverage:
    benchmark: Benchmark
    level: int
    items: tuple[ItemCoverage, ...]

    def count(self, status: str, *, automated: bool | None = None) -> int:
        return sum(
            1
            for c in self.items
            if c.status == status
            and (automated is None or (c.item.assessment is Assessment.automated) == automated)
        )

    def automated(self) -> int:
        return sum(1 for c in self.items if c.item.assessment is Assessment.automated)


def measure_coverage(
    benchmark: Benchmark,
    level: int,
    references: Iterable[tuple[str, tuple[str, ...]]],
    *,
    waived: Mapping[str, str] | None = None,
    not_applied: Mapping[str, str] | None = None,
) -> Coverage:
    """Each Server item at ``level`` (and below) against the controls that
    reference it: ``references`` holds (control id, its item numbers on this
    benchmark). A control under ``waived`` or ``not_applied`` (id -> reason)
    covers nothing in practice and is reported as such.

    An item is covered when a control that applies references it; else waived
    or not applied; else one of goldsmith's choices; else manual (the
    benchmark assesses it by hand) or not covered.
    """
    waived = waived or {}
    not_applied = not_applied or {}
    by_item: dict[str, list[str]] = {}
    for ident, numbers in references:
        for number in numbers:
            by_item.setdefault(number, []).append(ident)
    rows = []
    for item in benchmark.server_items(level):
        controls = tuple(by_item.get(item.number, ()))
        applied = [c for c in controls if c not in waived and c not in not_applied]
        choice = benchmark.choice(item.number)
        if applied:
            rows.append(ItemCoverage(item, "covered", controls))
        elif controls and any(c in waived for c in controls):
            first = next(c for c in controls if c in waived)
            rows.append(ItemCoverage(item, "waived", controls, waived[first]))
        elif controls:
            rows.append(ItemCoverage(item, "not-applied", controls, not_applied[controls[0]]))
        elif choice:
            rows.append(ItemCoverage(item, "choice", (), choice))
        elif item.assessment is Assessment.manual:
            rows.append(ItemCoverage(item, "manual"))
        else:
            rows.append(ItemCoverage(item, "not-covered"))
    return Coverage(benchmark, level, tuple(rows))
