"""dev-sec's baselines: every id is covered by a control or says why not, and
the hardened-server profile covers every one that applies."""

from __future__ import annotations

from typing import Any

import pytest

from hardening.catalog import load_catalog
from hardening.devsec import load_devsec, measure_devsec, parse_devsec
from hardening.errors import ProfileError
from hardening.profile import load_profile


def references(controls: Any) -> list[tuple[str, tuple[str, ...]]]:
    return [(c.id, c.references.devsec) for c in controls]


def test_the_catalog_references_only_known_ids() -> None:
    known = load_devsec().ids()
    for control in load_catalog().values():
        for ident in control.references.devsec:
            assert ident in known, (control.id, ident)


def test_every_id_is_covered_or_not_applicable_and_never_both() -> None:
    devsec = load_devsec()
    rows = measure_devsec(devsec, references(load_catalog().values()))
    assert [r.ident for r in rows if r.status == "not-covered"] == []
    covered = {r.ident for r in rows if r.status == "covered"}
    assert not covered & set(devsec.not_applicable)


def test_hardened_server_covers_every_id_that_applies() -> None:
    profile = load_profile("hardened-server")
    rows = measure_devsec(load_devsec(), references(sc.control for sc in profile.controls))
    assert {r.status for r in rows} == {"covered", "not-applicable"}
    assert sum(r.status == "covered" for r in rows) >= 110


def test_the_ids_are_those_of_the_baselines_read() -> None:
    devsec = load_devsec()
    assert [(b.name, b.version) for b in devsec.baselines] == [
        ("linux-baseline", "2.10.0"),
        ("ssh-baseline", "2.8.1"),
    ]
    assert len(devsec.ids()) == 130


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"baselines": []}, None),
        ({"baselines": [], "not_applicable": {}}, "baselines"),
        (
            {
                "baselines": [{"name": "x", "version": "1", "commit": "c", "ids": {"OS 1": "t"}}],
                "not_applicable": {},
            },
            "baselines[0].ids",
        ),
        (
            {
                "baselines": [{"name": "x", "version": "1", "commit": "c", "ids": {"os-1": "t"}}],
                "not_applicable": {"os-2": "why"},
            },
            "not_applicable.os-2",
        ),
        (
            {
                "baselines": [{"name": "x", "version": "1", "commit": "c", "ids": {"os-1": "t"}}],
                "not_applicable": {"os-1": ""},
            },
            "not_applicable.os-1",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_the_field(data: Any, field: str | None) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_devsec(data, "devsec.yaml")
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


def test_coverage_command_reports_devsec_ids() -> None:
    import json

    from click.testing import CliRunner

    from builder.cli import cli

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["controls", "coverage", "--benchmark", "devsec", *args])
        return result.exit_code, result.output

    code, out = run("--profile", "hardened-server")
    assert code == 0, out
    assert out.startswith("dev-sec linux-baseline 2.10.0, dev-sec ssh-baseline 2.8.1")
    assert "sshd-48     Server: DH primes  <- ssh-moduli" in out
    assert "sshd-15     Server: Specify UseLogin to NO  <- UseLogin was removed" in out
    code, out = run("--profile", "baseline", "--json")
    rows = {r["item"]: r for r in json.loads(out)["results"]}
    assert rows["sshd-06"]["status"] == "covered"
    assert rows["sshd-48"]["status"] == "not-covered"  # ssh-moduli: hardened-server only
    assert rows["sysctl-29"]["status"] == "not-applicable"
