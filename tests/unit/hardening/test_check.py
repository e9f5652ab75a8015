"""gather_facts / evaluate / check_naive against a fake host that answers the
gather script's probes from synthetic evidence built for a whole profile."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import re
import shlex
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from hardening.check import check_naive, evaluate, gather_facts
from hardening.compare import Expect, Op
from hardening.facts import Facts, Section
from hardening.mechanisms import MECHANISMS
from hardening.profile import Profile, list_profiles, load_profile
from hardening.results import Status


@dataclasses.dataclass(frozen=True)
class FakeResult:
    rc: int
    stdout: str
    stderr: str = ""


def _value(expect: Expect, good: bool) -> str | None:
    """An observed value that satisfies (good) or violates an expectation."""
    op, value = expect.op, expect.value
    if op is Op.absent:
        return None if good else "1"
    if op is Op.present:
        return "" if good else None
    if op is Op.eq:
        return str(value) if good else "bogus"
    if op is Op.ne:
        return "bogus" if good else str(value)
    if op is Op.max:
        return str(value) if good else str(int(value) + 1000)
    if op is Op.min:
        return str(value) if good else str(int(value) - 1000)
    if op is Op.range:
        return str(value[1]) if good else str(value[1] + 1)
    if op is Op.one_of:
        return value[0] if good else "bogus"
    if op in (Op.subset, Op.includes):
        return ",".join(value) if good else "bogus"
    return "fine" if good else "x" + value[0].strip("^$\\")


def synthetic_sections(profile: Profile, good: bool) -> dict[str, tuple[int, str]]:
    """Evidence of a host where every control of the profile passes (or fails)."""
    sysctl: dict[str, str | None] = {}
    sshd: dict[str, str | None] = {}
    kv: dict[str, dict[str, str | None]] = {}
    sections: dict[str, tuple[int, str]] = {}
    packages = {"openssh-server"}
    for sc in profile.controls:
        mech = MECHANISMS[sc.control.mechanism]
        spec: Any = mech.parse(sc.params)
        name = sc.control.mechanism
        if name == "sysctl":
            for s in spec.settings:
                sysctl[s.key] = _value(s.expect, good)
        elif name == "sshd":
            for o in spec.options:
                sshd[o.key.lower()] = _value(o.expect, good)
        elif name in ("login_defs", "pwquality", "faillock", "pwhistory", "config_kv"):
            for s in spec.settings:
                kv.setdefault(spec.read[0], {})[s.key] = _value(s.expect, good)
                sep = " = " if spec.separator == "equals" else " "
                for pattern in spec.read:
                    text = "".join(
                        f"{k}{sep}{v}\n" if v else f"{k}\n"
                        for k, v in kv.get(pattern, {}).items()
                        if v is not None
                    )
                    body = f"==> {pattern} <==\n{text}" if pattern in kv else ""
                    sections[f"files:{pattern}"] = (0, body)
        elif name == "kmod":
            dry = "install /bin/false\n" if good else f"insmod /lib/{spec.module}.ko\n"
            sections[f"modprobe:{spec.module}"] = (0, dry)
            if good:
                prior = sections.get("modprobe-config", (0, ""))[1]
                sections["modprobe-config"] = (0, prior + f"blacklist {spec.kernel_name}\n")
        elif name == "package_absent":
            if not good:
                packages.update(spec.packages)
        elif name == "package_present":
            if good:
                packages.update(spec.packages)
        elif name == "service":
            state = {"masked": "masked inactive", "disabled": "disabled inactive"}.get(
                spec.state, "enabled active"
            )
            wrong = "enabled active" if spec.state != "enabled" else "disabled inactive"
            sections[f"unit:{spec.unit}"] = (0, state if good else wrong)
        elif name == "file_perm":
            mode = f"{spec.max_mode:o}" if good else "777"
            line = f"{mode}|{spec.owners[0]}|{spec.groups[0]}|regular file|{spec.path}\n"
            sections[f"stat:{spec.path}"] = (0, line)
        else:  # pragma: no cover - a new mechanism needs evidence here
            raise AssertionError(f"no synthetic evidence for {name}")
    sections["sysctl"] = (0, "".join(f"{k} = {v}\n" for k, v in sysctl.items() if v is not None))
    persisted = "".join(f"{k} = {v}\n" for k, v in sysctl.items() if v is not None)
    sections["sysctl.d"] = (0, f"==> /etc/sysctl.d/60-goldsmith.conf <==\n{persisted}")
    sections["sshd"] = (0, "".join(f"{k} {v}\n" for k, v in sshd.items() if v is not None))
    sections["proc-modules"] = (0, "ext4 1 0 - Live 0x0\n")
    sections.setdefault("modprobe-config", (0, ""))
    sections["packages"] = (0, "".join(f"{p}\tii \t1.0\n" for p in sorted(packages)))
    return sections


class FakeHost:
    """Answers a gather script with canned sections, counting host.run calls."""

    def __init__(self, sections: dict[str, tuple[int, str]]) -> None:
        self.sections = sections
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def run(self, command: str, *args: str) -> FakeResult:
        self.calls.append((command, args))
        script = args[0]
        if "base64" in command:
            script = gzip.decompress(base64.b64decode(script)).decode()
        mark_line = re.search(r"^GS_MARK=(.*)$", script, re.MULTILINE)
        assert mark_line is not None
        mark = shlex.split(mark_line.group(1))[0]
        names = re.findall(r'^printf "%s begin %s\\n" "\$GS_MARK" (.*)$', script, re.MULTILINE)
        out = []
        for quoted in names:
            name = shlex.split(quoted)[0]
            rc, text = self.sections.get(name, (1, ""))
            out.append(f"{mark} begin {name}\n{text}\n{mark} end {rc}\n")
        return FakeResult(0, "".join(out))


@pytest.fixture(scope="module")
def baseline() -> Profile:
    return load_profile("baseline")


def test_gather_uses_one_run_for_the_whole_profile(baseline: Profile) -> None:
    host = FakeHost(synthetic_sections(baseline, good=True))
    gather_facts(host, baseline)
    assert len(host.calls) <= 3


def test_good_host_passes_everything(baseline: Profile) -> None:
    host = FakeHost(synthetic_sections(baseline, good=True))
    results = evaluate(baseline, gather_facts(host, baseline))
    assert [r.id for r in results] == [sc.id for sc in baseline.controls]
    bad = [(r.id, r.status, r.expected, r.observed) for r in results if r.status != "passed"]
    assert not bad


def test_failing_host_fails_every_control(baseline: Profile) -> None:
    host = FakeHost(synthetic_sections(baseline, good=False))
    results = evaluate(baseline, gather_facts(host, baseline))
    not_failed = [(r.id, r.status, r.observed) for r in results if r.status is not Status.failed]
    assert not not_failed
    for result in results:
        assert result.expected and result.observed
        assert result.area == baseline_area(baseline, result.id)


def baseline_area(profile: Profile, ident: str) -> str:
    return next(sc.control.area for sc in profile.controls if sc.id == ident)


def test_naive_check_agrees_and_runs_per_control(baseline: Profile) -> None:
    sections = synthetic_sections(baseline, good=False)
    fast = evaluate(baseline, gather_facts(FakeHost(sections), baseline))
    host = FakeHost(sections)
    slow = check_naive(host, baseline)
    assert len(host.calls) >= len(baseline.controls)
    assert [(r.id, r.status, r.observed) for r in slow] == [
        (r.id, r.status, r.observed) for r in fast
    ]


def test_no_evidence_is_an_error_not_a_pass(baseline: Profile) -> None:
    results = evaluate(baseline, Facts({}))
    assert {r.status for r in results} == {Status.error}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_waived_control_keeps_evidence_and_expired_waiver_is_ignored(tmp_path: Path) -> None:
    profile = load_profile(
        write(
            tmp_path / "p.yaml",
            "id: p\nversion: '1'\nextends: baseline\nwaivers:\n"
            "  - {control: ssh-root-login, reason: break-glass console access}\n"
            "  - {control: kernel-aslr, reason: old, expires: 2020-01-01}\n",
        )
    )
    results = {
        r.id: r
        for r in evaluate(
            profile, gather_facts(FakeHost(synthetic_sections(profile, False)), profile)
        )
    }
    waived = results["ssh-root-login"]
    assert waived.status is Status.waived
    assert waived.reason == "break-glass console access"
    assert "permitrootlogin bogus" in waived.observed
    expired = results["kernel-aslr"]
    assert expired.status is Status.failed
    assert "expired" in expired.reason
    still_valid = evaluate(
        profile,
        gather_facts(FakeHost(synthetic_sections(profile, False)), profile),
        date(2019, 1, 1),
    )
    assert {r.id: r.status for r in still_valid}["kernel-aslr"] is Status.waived


@pytest.mark.parametrize("name", list_profiles())
def test_every_shipped_profile_gathers_in_at_most_three_runs(name: str) -> None:
    profile = load_profile(name)
    host = FakeHost({})
    facts = gather_facts(host, profile)
    assert len(host.calls) <= 3
    assert isinstance(facts.sections.get("goldsmith:run"), Section)
