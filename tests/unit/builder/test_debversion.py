"""Debian version ordering (builder/debversion.py): known orderings, dpkg itself
as the referee, malformed versions refused, and absurd ones cheap."""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess

import pytest

from builder.debversion import compare_versions, parse_version

# Each list is in strictly ascending order.
ASCENDING = [
    ["1.0~~", "1.0~~a", "1.0~", "1.0", "1.0a", "1.0+", "1.0.1"],
    ["1.0~rc1", "1.0~rc2", "1.0", "1.0-1", "1.0+b1"],
    ["1.9", "1.10", "1.100", "2"],
    ["2.30-21", "2.30-21+deb12u1", "2.30-21+deb12u10", "2.30-22"],
    ["1.0-1~bpo12+1", "1.0-1", "1.0-1+b1", "1.0-2"],
    ["7.88.1-10+deb12u5", "7.88.1-10+deb12u12", "8.0.0-1"],
    ["2.0", "1:0.9", "1:1.0", "2:0.1"],
    ["1.2.3-1", "1.2.3+dfsg-1", "1.2.3.1-1"],
    ["1.0-a", "1.0-z", "1.0-+", "1.0-."],
    ["3.0.11-1~deb12u2", "3.0.11-1~deb12u2+b1", "3.0.13-1~deb12u1"],
]
EQUAL = [
    ("1.0", "1.0-0"),
    ("0:1.0", "1.0"),
    ("1.01", "1.1"),
    ("1.0-01", "1.0-1"),
    ("1.00", "1.0"),
]


@pytest.mark.parametrize("ordered", ASCENDING, ids=lambda o: " < ".join(o))
def test_known_orderings(ordered: list[str]) -> None:
    for low, high in itertools.combinations(ordered, 2):
        assert compare_versions(low, high) == -1, (low, high)
        assert compare_versions(high, low) == 1, (high, low)
        assert compare_versions(low, low) == 0


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_known_equalities(a: str, b: str) -> None:
    assert compare_versions(a, b) == 0
    assert compare_versions(b, a) == 0


def test_version_parts() -> None:
    assert parse_version("1:2.3-4") == (1, "2.3", "4")
    assert parse_version("2.3") == (0, "2.3", "")
    # Only the last hyphen starts the revision; upstream may hold hyphens itself.
    assert parse_version("1.2-3-4") == (0, "1.2-3", "4")
    assert parse_version("1:2:3") == (1, "2:3", "")


@pytest.mark.parametrize("bad", ["", " ", "x:1.0", "1.0 1", "-1", "1:"])
def test_malformed_versions_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_version(bad)


def _random_version(rng: random.Random) -> str:
    def run(alphabet: str, length: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(length))

    upstream = str(rng.randint(0, 12)) + run("0123456789.~+a", rng.randint(0, 5))
    version = upstream
    if rng.random() < 0.5:
        version += "-" + run("0123456789.~+b", rng.randint(1, 4))
    if rng.random() < 0.2:
        version = f"{rng.randint(0, 2)}:{version}"
    return version


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is not installed")
def test_agrees_with_dpkg() -> None:
    rng = random.Random(20261127)
    versions = sorted({v for group in ASCENDING for v in group})
    # Neighbours in string order (many share a prefix), and random pairs.
    pairs = list(itertools.pairwise(versions))
    pairs += [(_random_version(rng), _random_version(rng)) for _ in range(120)]
    # One shell for every comparison: dpkg itself answers each one.
    relation = {-1: "lt", 0: "eq", 1: "gt"}
    lines = []
    for a, b in pairs:
        rel = relation[compare_versions(a, b)]
        lines.append(
            f"dpkg --compare-versions '{a}' {rel} '{b}' 2>/dev/null || echo '{a} {rel} {b}'"
        )
    result = subprocess.run(
        ["sh", "-c", "\n".join(lines)], capture_output=True, text=True, check=True
    )
    assert result.stdout == "", "dpkg disagrees:\n" + result.stdout


def test_digit_runs_of_any_length_compare_without_int() -> None:
    long = "1" + "0" * 10_000
    assert compare_versions(long, "9") == 1
    assert compare_versions("1." + long, "1." + long + "1") == -1
    assert compare_versions("0" * 10_000 + "1", "1") == 0
