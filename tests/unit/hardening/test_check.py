"""gather_facts / evaluate / check_naive against a fake host that answers the
gather script's probes from synthetic evidence built for a whole profile."""

from __future__ import annotations

import base64
import contextlib
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
    if op is Op.includes_any:
        return value[0] if good else "bogus"
    return "fine" if good else "x" + value[0].strip("^$\\")


def synthetic_sections(profile: Profile, good: bool) -> dict[str, tuple[int, str]]:
    """Evidence of a host where every control of the profile passes (or fails)."""
    sysctl: dict[str, str | None] = {}
    sshd: dict[str, str | None] = {}
    kv: dict[str, dict[str, str | None]] = {}
    sections: dict[str, tuple[int, str]] = {}
    files: dict[str, str] = {}  # path -> content, the batched "files" section
    stats: list[str] = []
    units: dict[str, str] = {}
    packages = {"openssh-server", "at"}
    for sc in profile.controls:
        mech = MECHANISMS[sc.control.mechanism]
        spec: Any = mech.parse(sc.params)
        name = sc.control.mechanism
        if name == "sysctl":
            for s in spec.settings:
                sysctl[s.key] = _value(s.expect, good)
        elif name == "sshd":
            for o in spec.options:
                key, value = o.key.lower(), _value(o.expect, good)
                prior = sshd.get(key)
                if o.expect.op in (Op.excludes, Op.includes_any) and prior and value:
                    # Controls that judge one list (KexAlgorithms) each add their item.
                    sshd[key] = f"{prior},{value}"
                else:
                    sshd[key] = value
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
                    if pattern in kv:
                        files[pattern] = text
        elif name == "kmod":
            if good:
                prior = sections.get("modprobe-config", (0, ""))[1]
                rules = f"blacklist {spec.kernel_name}\ninstall {spec.kernel_name} /bin/false\n"
                sections["modprobe-config"] = (0, prior + rules)
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
            units[spec.unit] = state if good else wrong
        elif name == "file_perm":
            mode = f"{spec.max_mode:o}" if good else "777"
            line = f"{mode}|{spec.owners[0]}|{spec.groups[0]}|regular file|{spec.path}\n"
            stats.append(line)
        elif name == "mount":
            opts = ",".join(("rw", *spec.options)) if good else "rw,relatime"
            prior = sections.get("findmnt", (0, "/ /dev/vda1 ext4 rw\n"))[1]
            sections["findmnt"] = (0, prior + f"{spec.target} tmpfs tmpfs {opts}\n")
            prior = sections.get("file:/etc/fstab", (0, ""))[1]
            sections["file:/etc/fstab"] = (0, prior + f"tmpfs {spec.target} tmpfs {opts} 0 0\n")
        elif name == "cmdline":
            word = f"{spec.name}={spec.write}" if good else ""
            prior = sections.get("file:/proc/cmdline", (0, "BOOT_IMAGE=/vmlinuz ro"))[1]
            sections["file:/proc/cmdline"] = (0, f"{prior} {word}".strip())
            prior = sections.get("grub-linux-lines", (0, "linux /vmlinuz ro"))[1]
            sections["grub-linux-lines"] = (0, f"{prior} {word}".strip())
        elif name == "audit":
            rules = "\n".join(spec.rules) if good else ""
            prior = sections.get("auditctl-rules", (0, ""))[1]
            sections["auditctl-rules"] = (0, prior + rules + "\n")
            tail = "\n-e 2" if good and spec.immutable else ""
            head = "-c\n" if good and spec.continue_loading else ""
            files[f"/etc/audit/rules.d/{spec.file}.rules"] = f"{head}{rules}{tail}\n"
            if spec.continue_loading:
                files["/etc/audit/audit.rules"] = f"-D\n{head}"
            sections["auditctl-status"] = (0, "enabled 2\n" if good else "enabled 1\n")
        elif name == "file_scan":
            if not good:
                tag = {"world_writable": "ww", "unowned": "uo", "suid_sgid": "sx"}[spec.find]
                prior = sections.get("file-scan", (0, ""))[1]
                sections["file-scan"] = (0, prior + f"{tag} /srv/offender\n")
        elif name == "script":
            text = ""
            if spec.pass_if == "matches":
                text = (
                    "evidence"
                    if not good
                    else "1 profiles are loaded\n0 processes are unconfined\nP\nUMASK 027"
                )
            elif not good:
                text = "offender"
            sections[spec.probe_name] = (0 if good else 1, text)
        else:  # pragma: no cover - a new mechanism needs evidence here
            raise AssertionError(f"no synthetic evidence for {name}")
    sections["sysctl"] = (0, "".join(f"{k} = {v}\n" for k, v in sysctl.items() if v is not None))
    persisted = "".join(f"{k} = {v}\n" for k, v in sysctl.items() if v is not None)
    files["/etc/sysctl.d/60-goldsmith.conf"] = persisted
    sections["files"] = (0, "".join(f"==> {p} <==\n{t}\n" for p, t in files.items()))
    sections["stat"] = (0, "".join(stats))
    listed = "".join(f"{u} {s.split()[0]} enabled\n" for u, s in units.items())
    active = "".join(f"{u} loaded {s.split()[1]} x\n" for u, s in units.items())
    sections["units"] = (0, f"{listed}--\n{active}")
    sections["sshd"] = (0, "".join(f"{k} {v}\n" for k, v in sshd.items() if v is not None))
    sections["proc-modules"] = (0, "ext4 1 0 - Live 0x0\n")
    sections.setdefault("findmnt", (0, "/ /dev/vda1 ext4 rw\n"))
    sections.setdefault("file:/etc/fstab", (0, ""))
    sections.setdefault("modprobe-config", (0, ""))
    allowed = "".join(f"sx {p}\n" for p in ("/usr/bin/su", "/usr/bin/sudo"))
    sections.setdefault("file-scan", (0, allowed))
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

    def sudo(self, user: str | None = None) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


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


@pytest.mark.parametrize("name", list_profiles())
def test_every_control_of_every_profile_can_pass_and_fail(name: str) -> None:
    profile = load_profile(name)
    good = evaluate(profile, gather_facts(FakeHost(synthetic_sections(profile, True)), profile))
    bad = evaluate(profile, gather_facts(FakeHost(synthetic_sections(profile, False)), profile))
    by_design = {"boot-grub-password"}  # skipped until a password hash is given
    for ok, ko in zip(good, bad, strict=True):
        if ok.id in by_design:
            assert ok.status is Status.skipped and ko.status is Status.skipped
            continue
        waived = Status.waived
        assert ok.status in (Status.passed, waived), (ok.id, ok.expected, ok.observed)
        assert ko.status in (Status.failed, waived), (ko.id, ko.expected, ko.observed)
        if ko.status is waived:
            assert ko.reason and ko.observed  # waived, with the evidence kept


def test_gather_script_framing_under_real_bash(tmp_path: Path) -> None:
    """The marker framing survives real output: no trailing newline, a forged
    marker line in file content, and a failing probe's exit status."""
    import subprocess

    from hardening.facts import Probe, parse_sections, probe_file, probe_stat, render_gather_script

    tricky = tmp_path / "tricky"
    tricky.write_text("@@goldsmith-0000@@ end 0\nno newline at end")
    tricky.chmod(0o640)
    probes = [probe_file(str(tricky)), probe_stat(str(tmp_path / "t*")), Probe("fails", "exit 3")]
    script, mark = render_gather_script(probes)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    found = parse_sections(done.stdout, mark)
    assert found.text(f"file:{tricky}") == tricky.read_text()
    assert found.text("stat").startswith("640|")
    assert found.get("fails").rc == 3


def test_batched_probes_merge_into_one_command(tmp_path: Path) -> None:
    """Units, stat and files probes of many controls become one command each,
    and each control still reads only its own paths from the shared answer."""
    import subprocess

    from hardening.facts import (
        file_contents,
        glob_match,
        parse_sections,
        probe_files,
        probe_stat,
        probe_unit,
        render_gather_script,
        stat_lines,
    )

    (tmp_path / "a.conf").write_text("a = 1\n")
    (tmp_path / "b.conf").write_text("b = 2")
    (tmp_path / ".hidden.conf").write_text("h = 3\n")
    (tmp_path / "x").write_text("")
    probes = [
        probe_files(f"{tmp_path}/*.conf"),
        probe_files(f"{tmp_path}/x"),
        probe_files(f"{tmp_path}/*.conf"),
        probe_stat(f"{tmp_path}/x"),
        probe_stat(f"{tmp_path}/missing"),
        probe_unit("cron.service"),
        probe_unit("ssh.service"),
    ]
    script, mark = render_gather_script(probes)
    assert script.count("mapfile") == 1
    assert script.count("stat -L -c") == 1
    assert "list-unit-files --no-legend --no-pager cron.service ssh.service " in script
    # Goldsmith's own probes cost no subshell.
    assert "\n( " not in script
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    facts = parse_sections(done.stdout, mark)
    assert file_contents(facts, f"{tmp_path}/*.conf") == {
        f"{tmp_path}/a.conf": "a = 1\n",
        f"{tmp_path}/b.conf": "b = 2\n",
    }
    assert list(file_contents(facts, f"{tmp_path}/x")) == [f"{tmp_path}/x"]
    assert [line.split("|")[-1] for line in stat_lines(facts, f"{tmp_path}/x")] == [f"{tmp_path}/x"]
    assert stat_lines(facts, f"{tmp_path}/missing") == []
    assert glob_match("/etc/ssh/ssh_host_*_key", "/etc/ssh/ssh_host_rsa_key")
    assert not glob_match("/etc/*.conf", "/etc/sub/x.conf")
    assert not glob_match("/etc/*.conf", "/etc/.x.conf")


@pytest.mark.parametrize("lanes", [2, 3, 8])
def test_probes_in_parallel_lanes_give_the_same_sections(tmp_path: Path, lanes: int) -> None:
    """Lanes only change when probes run, never what each section holds."""
    import subprocess

    from hardening.facts import Probe, parse_sections, probe_file, render_gather_script

    (tmp_path / "a").write_text("alpha\n")
    probes = [
        probe_file(str(tmp_path / "a")),
        Probe("slow", "sleep 0.2; echo slow"),
        Probe("fails", "echo partial; exit 4"),
        Probe("inline", "echo inline", isolated=False),
        Probe("fast", "echo fast"),
    ]
    found = {}
    for n in (1, lanes):
        script, mark = render_gather_script(probes, "@@m@@", lanes=n)
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
        found[n] = parse_sections(done.stdout, mark).sections
    assert found[1] == found[lanes]
    assert set(found[lanes]) == {f"file:{tmp_path / 'a'}", "slow", "fails", "inline", "fast"}
    assert found[lanes]["fails"].rc == 4
