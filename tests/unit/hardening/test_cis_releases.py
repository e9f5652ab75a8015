"""One profile, two releases: references name the benchmark of the guest's
release, a CIS level selects per release, and a control that does not apply to
a release is reported not applicable there, never dropped."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from builder.cli import cli
from hardening.apply import needed_packages, render_apply_script
from hardening.catalog import load_catalog
from hardening.check import evaluate, probes_for
from hardening.control_reader import parse_control
from hardening.errors import ProfileError
from hardening.facts import OS_RELEASE, Facts, Section, guest_release
from hardening.profile import load_profile
from hardening.results import Status
from hardening.shell import PRELUDE


def control(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "acme.sysrq",
        "title": "SysRq is off",
        "area": "kernel",
        "rationale": "A console keystroke should not reboot a server.",
        "mechanism": "sysctl",
        "params": {"settings": [{"key": "kernel.sysrq", "value": 0}]},
    }
    data.update(overrides)
    return data


def parse(**overrides: Any) -> Any:
    return parse_control(control(**overrides), "p.yaml", "controls[0]", custom=True)


def test_references_name_the_benchmark_of_the_release() -> None:
    refs = load_catalog()["ssh-root-login"].references
    anssi = "ANSSI BP-028 v2.0 R33"
    assert refs.strings("12") == ("CIS Debian 12 v1.1.0 5.1.20 (L1)", "dev-sec sshd-06", anssi)
    assert refs.strings("13") == ("CIS Debian 13 v1.0.0 5.1.21 (L1)", "dev-sec sshd-06", anssi)
    both = ("CIS Debian 12 v1.1.0 5.1.20 (L1)", "CIS Debian 13 v1.0.0 5.1.21 (L1)")
    assert refs.strings()[:2] == both
    assert refs.strings("14")[:2] == both  # no benchmark for it: name them all


def test_levels_differ_per_release() -> None:
    refs = load_catalog()["kmod-dccp"].references
    assert (refs.level_on("12"), refs.level_on("13")) == (2, 1)
    # No Debian 13 item (that benchmark describes ufw): its Debian 12 level holds.
    assert load_catalog()["fw-nftables-ruleset"].references.level_on("13") == 1


def test_a_plain_cis_list_names_debian12_items() -> None:
    refs = parse(cis=["1.5.3"], cis_level=1).references
    assert [(r.benchmark, r.items, r.level) for r in refs.cis] == [("debian12", ("1.5.3",), 1)]


def test_cis_by_benchmark_with_a_level_each() -> None:
    refs = parse(
        cis={"debian13": ["3.2.3"], "debian12": ["3.2.1"]},
        cis_level={"debian12": 2, "debian13": 1},
    ).references
    assert [(r.benchmark, r.level) for r in refs.cis] == [("debian12", 2), ("debian13", 1)]
    assert refs.cis_level == 1


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"cis": {"debian14": ["1.1"]}, "cis_level": 1}, "cis.debian14", "a benchmark"),
        ({"cis": {"debain13": ["1.5.8"]}, "cis_level": 1}, "cis.debain13", "mean 'debian13'?"),
        ({"cis": {"debian13": ["9.9.9"]}, "cis_level": 1}, "cis.debian13", "(no 9.9.9)"),
        ({"cis": {"debian13": []}, "cis_level": 1}, "cis.debian13", "numbers"),
        ({"cis": {"debian13": ["1.5.8"]}, "cis_level": 3}, "cis_level", "1 or 2"),
        (
            {"cis": {"debian13": ["1.5.8"]}, "cis_level": {"debian12": 1}},
            "cis_level",
            "one level for each benchmark",
        ),
        ({"cis_level": 1, "devsec": ["x"]}, "cis_level", "only with cis numbers"),
        ({"releases": [14], "releases_reason": "x"}, "releases", "among 12, 13"),
        ({"releases": [12]}, "releases_reason", "why"),
        ({"releases_reason": "x", "devsec": ["x"]}, "releases_reason", "only with releases"),
    ],
)
def test_bad_cis_and_release_keys_are_refused(
    overrides: dict[str, Any], field: str, expected: str
) -> None:
    overrides.setdefault("devsec", ["x"])
    with pytest.raises(ProfileError) as caught:
        parse(**overrides)
    assert caught.value.field == f"controls[0](acme.sysrq).{field}"
    assert expected in caught.value.expected


def test_level1_selects_per_release() -> None:
    level1 = {sc.id: sc for sc in load_profile("cis-level1-server").controls}
    # CIS Debian 13 has the rare protocols at level 1, Debian 12 at level 2.
    assert dict(level1["kmod-dccp"].not_on) == {
        "12": "CIS Debian 12 v1.1.0 has it at level 2; this profile selects level 1"
    }
    assert not level1["ssh-root-login"].not_on
    assert "kmod-overlay" not in level1  # level 2 on both
    # Level 2 takes everything of level 1 and 2 on every release: only a
    # control that names its releases is not applicable elsewhere.
    level2 = load_profile("cis-level2-server").controls
    assert {sc.id: dict(sc.not_on) for sc in level2 if sc.not_on} == {
        sc.id: {r: sc.control.releases_reason for r in ("12", "13") if r not in sc.control.releases}
        for sc in level2
        if sc.control.releases
    }


def write_profile(folder: Path, **document: Any) -> Path:
    path = folder / "profile.yaml"
    path.write_text(
        yaml.safe_dump({"id": "acme", "version": "1", **document}, sort_keys=False),
        encoding="utf-8",
    )
    return path


def test_listing_a_control_selects_it_on_every_release(tmp_path: Path) -> None:
    path = write_profile(tmp_path, extends="cis-level1-server", controls=["kmod-dccp"])
    selected = {sc.id: sc for sc in load_profile(path).controls}
    assert not selected["kmod-dccp"].not_on


def test_a_control_for_one_release_is_not_applicable_elsewhere(tmp_path: Path) -> None:
    mine = control(
        devsec=["x"], releases=[12], releases_reason="Debian 13's kernel has no such switch"
    )
    path = write_profile(tmp_path, extends="baseline", controls=[mine])
    profile = load_profile(path)
    selected = {sc.id: sc for sc in profile.controls}["acme.sysrq"]
    assert dict(selected.not_on) == {"13": "Debian 13's kernel has no such switch"}
    assert "not_on" in str(profile.canonical())


def guest(release: str) -> Facts:
    return Facts({OS_RELEASE.name: Section(0, f'NAME="Debian"\nVERSION_ID="{release}"\n')})


def test_guest_release_is_read_from_os_release() -> None:
    assert guest_release(guest("13")) == "13"
    assert guest_release(Facts({OS_RELEASE.name: Section(0, "VERSION_ID=12.5\n")})) == "12"
    assert guest_release(Facts({OS_RELEASE.name: Section(0, 'NAME="Debian"\n')})) is None
    assert guest_release(Facts({})) is None
    assert OS_RELEASE in probes_for(load_profile("baseline").controls)


def test_results_name_the_guests_benchmark_and_skip_what_does_not_apply() -> None:
    profile = load_profile("cis-level1-server")
    on12 = {r.id: r for r in evaluate(profile, guest("12"))}
    on13 = {r.id: r for r in evaluate(profile, guest("13"))}
    assert on12["ssh-root-login"].references[0] == "CIS Debian 12 v1.1.0 5.1.20 (L1)"
    assert on13["ssh-root-login"].references[0] == "CIS Debian 13 v1.0.0 5.1.21 (L1)"
    assert not any("Debian 12" in ref for r in on13.values() for ref in r.references)
    assert on12["kmod-dccp"].status is Status.skipped
    assert on12["kmod-dccp"].reason == (
        "not applicable on Debian 12: "
        "CIS Debian 12 v1.1.0 has it at level 2; this profile selects level 1"
    )
    assert on13["kmod-dccp"].status is not Status.skipped


def test_apply_script_guards_by_the_guests_release(tmp_path: Path) -> None:
    profile = load_profile("cis-level1-server")
    script = render_apply_script(profile)
    assert "if gs_release_in 12; then" in script
    body = "\n".join(
        [
            "gs_begin demo",
            "if gs_release_in 12; then",
            "  gs_note 'not applicable on this Debian release'",
            "else",
            "echo applied",
            "fi",
            "gs_end",
        ]
    )
    outputs = {}
    for release in ("12", "13", ""):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", f"{PRELUDE}\nGS_RELEASE={release}\n{body}"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs[release] = done.stdout
    assert "applied" not in outputs["12"]
    assert "applied" in outputs["13"] and "applied" in outputs[""]


def test_packages_of_release_bound_controls_install_in_their_own_step(tmp_path: Path) -> None:
    mine = control(
        id="acme.tool",
        devsec=["x"],
        releases=[13],
        releases_reason="only trixie ships it",
        mechanism="package_present",
        params={"packages": ["acme-tool"]},
    )
    profile = load_profile(write_profile(tmp_path, extends="baseline", controls=[mine]))
    assert "acme-tool" not in needed_packages(profile)
    script = render_apply_script(profile)
    step = script[script.index("gs_begin acme.tool") :]
    assert step.index("gs_release_in 12") < step.index("gs_pkg_present acme-tool")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_coverage_command_reports_items_by_status() -> None:
    code, out = run("controls", "coverage", "--benchmark", "cis-debian13", "--level", "1")
    assert code == 0, out
    assert out.startswith("CIS Debian Linux 13 Benchmark v1.0.0, Level 1 - Server")
    assert "automated covered: " in out
    assert "5.1.21     L1 Ensure sshd PermitRootLogin is disabled  <- ssh-root-login" in out
    assert "4.1.1      L1 Ensure ufw is installed  <- nftables is the firewall" in out
    assert "manual (assessed by hand), not covered" in out


def test_coverage_json_and_profile() -> None:
    import json

    code, out = run("controls", "coverage", "--benchmark", "cis-debian12", "--level", "2", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["benchmark"] == "cis-debian12" and document["level"] == 2
    assert len(document["results"]) == document["items"] == 310
    code, out = run(
        "controls",
        "coverage",
        "--benchmark",
        "cis-debian12",
        "--profile",
        "cis-level1-server",
        "--json",
    )
    rows = {r["item"]: r for r in json.loads(out)["results"]}
    assert rows["1.1.2.3.2"]["status"] == "waived"  # fs-home: one root file system
    assert rows["5.1.20"]["status"] == "covered"
    code, out = run(
        "controls", "coverage", "--benchmark", "cis-debian13", "--profile", "baseline", "--json"
    )
    rows = {r["item"]: r for r in json.loads(out)["results"]}
    assert rows["5.1.21"]["status"] == "covered"
    assert rows["5.1.6"]["status"] == "not-covered"  # ciphers: not in the baseline


@pytest.mark.parametrize("benchmark", ["cis-debian12", "cis-debian13"])
def test_hardened_server_leaves_no_automated_item_uncovered(benchmark: str) -> None:
    # Issue 15: every automated Level 1 and 2 server item. A single-disk cloud
    # image has no separate /home, /var, /var/tmp, /var/log or /var/log/audit
    # partition: the fs-* mount controls check for one, and the profile waives
    # them with that reason, which coverage shows beside each item.
    import json

    code, out = run(
        "controls",
        "coverage",
        "--benchmark",
        benchmark,
        "--level",
        "2",
        "--profile",
        "hardened-server",
        "--json",
    )
    assert code == 0, out
    results = json.loads(out)["results"]
    uncovered = {
        r["item"]
        for r in results
        if r["status"] == "not-covered" and r["assessment"] == "automated"
    }
    assert uncovered == set()
    partitions = {"1.1.2.3.1", "1.1.2.4.1", "1.1.2.5.1", "1.1.2.6.1", "1.1.2.7.1"}
    waived = {r["item"]: r for r in results if r["item"] in partitions}
    assert {r["status"] for r in waived.values()} == {"waived"}, waived


def test_coverage_refuses_an_unknown_benchmark() -> None:
    code, out = run("controls", "coverage", "--benchmark", "cis-debain13")
    assert code == 2
    assert "did you mean 'cis-debian13'?" in out and "Traceback" not in out
    code, _ = run("controls", "coverage", "--benchmark", "cis-debian13", "--level", "3")
    assert code == 2


def test_controls_list_shortens_both_benchmarks() -> None:
    _, out = run("controls", "list")
    line = next(x for x in out.splitlines() if x.startswith("ssh-root-login "))
    assert "CIS12 5.1.20 (L1), CIS13 5.1.21 (L1)" in line
