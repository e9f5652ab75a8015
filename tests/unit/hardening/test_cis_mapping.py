"""The catalog's CIS mapping: every item it names exists in its benchmark at the
level the control declares, no item is claimed by two unrelated controls, and
coverage per benchmark and level adds up."""

from __future__ import annotations

from collections import defaultdict

import pytest

from hardening.benchmarks import Assessment, benchmark_by_id, load_benchmarks, measure_coverage
from hardening.catalog import load_catalog

# Items one benchmark recommendation asks of several controls, each doing part
# of it: (benchmark, item) -> the controls that share it, and nothing else.
SHARED = {
    # core dumps: the set-uid sysctl and the limits/coredump settings
    ("debian12", "1.5.3"): {"kernel-suid-dumpable", "kernel-core-dump-limits"},
    # one time daemon: timesyncd installed, and no other running
    ("debian12", "2.3.1.1"): {"time-single-daemon", "time-timesyncd-installed"},
    ("debian13", "2.3.1.1"): {"time-single-daemon", "time-timesyncd-installed"},
    # sshd_config and its drop-in folder
    ("debian12", "5.1.1"): {"ssh-config-permissions", "ssh-config-dropin-permissions"},
    ("debian13", "5.1.1"): {"ssh-config-permissions", "ssh-config-dropin-permissions"},
    # the default umask: login.defs and the shells' profile
    ("debian12", "5.4.3.3"): {"logindefs-umask", "accounts-default-umask"},
    ("debian13", "5.4.3.3"): {"logindefs-umask", "accounts-default-umask"},
    # audit configuration files: auditd.conf and the rule files
    **{
        (bench, item): {"audit-config-permissions", "audit-rules-file-permissions"}
        for bench in ("debian12", "debian13")
        for item in ("6.2.4.5", "6.2.4.6", "6.2.4.7")
    },
    # apt's key files: the trusted.gpg.d folder and the shared keyrings
    ("debian13", "1.2.1.3"): {"apt-trusted-keys-permissions", "apt-keyrings-permissions"},
    # chmod, fchmod and fchmodat, and fchmodat2, which only Debian 13 knows
    ("debian13", "6.2.3.18"): {"audit-rules-perm-mod", "audit-rules-perm-mod-fchmodat2"},
}


def test_every_item_exists_with_the_declared_level() -> None:
    benchmarks = load_benchmarks()
    problems = []
    for control in load_catalog().values():
        for ref in control.references.cis:
            items = benchmarks[ref.benchmark].items
            levels = [items[n].server for n in ref.items]
            if None in levels:
                problems.append(f"{control.id}: {ref.benchmark} item not in the Server profile")
                continue
            lowest = min(level for level in levels if level is not None)
            if ref.level != lowest:
                problems.append(
                    f"{control.id}: {ref.benchmark} level {ref.level}, items say {lowest}"
                )
    assert problems == []


def test_no_item_is_claimed_by_two_unrelated_controls() -> None:
    claimed: dict[tuple[str, str], set[str]] = defaultdict(set)
    for control in load_catalog().values():
        for ref in control.references.cis:
            for number in ref.items:
                claimed[(ref.benchmark, number)].add(control.id)
    shared = {key: ids for key, ids in claimed.items() if len(ids) > 1}
    assert shared == SHARED


def test_controls_mapped_on_debian12_are_mapped_on_debian13_unless_it_has_no_such_item() -> None:
    # Debian 13's numbering moved; a control that lost its reference there
    # must be one whose item the newer benchmark dropped or words otherwise.
    unmapped = sorted(
        c.id
        for c in load_catalog().values()
        if c.references.cis_on("debian12") and not c.references.cis_on("debian13")
    )
    assert unmapped == [
        # nftables: Debian 13's benchmark describes ufw only
        "apparmor-profiles-loaded",  # 13 asks for enforce mode only (1.3.1.3, level 2)
        "apt-signed-repositories",  # 13 asks for Signed-By on every source (manual)
        "fw-loopback",
        "fw-nftables-enabled",
        "fw-nftables-installed",
        "fw-nftables-ruleset",
        "fw-single-utility",
        "logging-single-system",  # 13 has no "only one logging system" item
    ]


@pytest.mark.parametrize("key", ["debian12", "debian13"])
def test_benchmark_lists_are_complete_facts(key: str) -> None:
    benchmark = load_benchmarks()[key]
    assert benchmark.id == f"cis-{key}"
    assert all(i.title and not i.title.endswith(")") for i in benchmark.items.values())
    assert all(i.server in (1, 2, None) for i in benchmark.items.values())
    numbers = list(benchmark.items)
    # In the benchmark's order: sections never run backwards.
    keys = [tuple(int(p) for p in n.split(".")) for n in numbers]
    assert keys == sorted(keys)


def test_debian13_item_list_has_the_benchmarks_size() -> None:
    benchmark = load_benchmarks()["debian13"]
    assert (benchmark.title, benchmark.version, benchmark.release) == (
        "CIS Debian Linux 13 Benchmark",
        "1.0.0",
        "13",
    )
    assert len(benchmark.items) == 343
    level1 = benchmark.server_items(1)
    assert len(level1) == 262
    assert sum(1 for i in level1 if i.assessment is Assessment.automated) == 249
    assert benchmark.items["5.1.21"].title == "Ensure sshd PermitRootLogin is disabled"
    assert benchmark.items["3.2.3"].server == 1  # dccp: level 2 on Debian 12, 1 on 13


def coverage_of(benchmark_id: str, level: int) -> dict[str, int]:
    benchmark = benchmark_by_id(benchmark_id)
    assert benchmark is not None
    refs = [
        (c.id, ref.items)
        for c in load_catalog().values()
        if (ref := c.references.cis_on(benchmark.key)) is not None
    ]
    coverage = measure_coverage(benchmark, level, refs)
    counts = {s: coverage.count(s) for s in ("covered", "choice", "manual", "not-covered")}
    assert sum(counts.values()) == len(benchmark.server_items(level))
    counts["automated covered"] = coverage.count("covered", automated=True)
    counts["automated"] = coverage.automated()
    return counts


def test_debian13_level1_server_coverage() -> None:
    counts = coverage_of("cis-debian13", 1)
    # Pinned so a lost mapping shows; raise it when the catalog covers more.
    assert counts["automated covered"] >= 226
    assert counts["automated"] == 249
    assert counts["not-covered"] == 0


def test_debian13_level2_and_debian12_coverage() -> None:
    assert coverage_of("cis-debian13", 2)["automated covered"] >= 294
    assert coverage_of("cis-debian12", 1)["automated covered"] >= 196
    assert coverage_of("cis-debian12", 2)["automated covered"] >= 249


def test_choices_name_real_items_and_explain_them() -> None:
    for benchmark in load_benchmarks().values():
        assert benchmark.choices
        assert benchmark.choice("4.1.1" if benchmark.release == "13" else "4.2.1")
        assert benchmark.choice("5.1.1") is None
