"""The check side of a whole profile: gather evidence in at most three remote
commands, then judge every control locally."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import date

from hardening.apply import condition_met_by_parameters
from hardening.errors import FactsError
from hardening.facts import (
    OS_RELEASE,
    PACKAGES,
    Facts,
    Probe,
    Section,
    guest_release,
    installed_packages,
    parse_sections,
    render_gather_script,
    wrap_for_run,
)
from hardening.host import Host
from hardening.mechanisms import MECHANISMS
from hardening.mechanisms.base import Outcome
from hardening.profile import Profile, SelectedControl
from hardening.results import CheckResult, Status

__all__ = ["Facts", "check_naive", "evaluate", "gather_facts"]

RUN_SECTION = "goldsmith:run"


def probes_for(selected: Iterable[SelectedControl]) -> list[Probe]:
    # The release names the benchmark results refer to, and which controls apply.
    probes: list[Probe] = [PACKAGES, OS_RELEASE]
    for sc in selected:
        mechanism = MECHANISMS[sc.control.mechanism]
        probes.extend(mechanism.probes(mechanism.parse(sc.params)))
    return probes


def _gather(host: Host, probes: list[Probe]) -> Facts:
    script, mark = render_gather_script(probes)
    command, argument = wrap_for_run(script)
    result = host.run(command, argument)
    facts = parse_sections(result.stdout, mark)
    status = Section(result.rc, result.stderr[-2000:])
    return Facts({**facts.sections, RUN_SECTION: status})


def gather_facts(host: Host, profile: Profile) -> Facts:
    """Every probe the profile's controls need, in one host.run call."""
    return _gather(host, probes_for(profile.controls))


def _judge(profile: Profile, sc: SelectedControl, facts: Facts, release: str | None) -> Outcome:
    mechanism = MECHANISMS[sc.control.mechanism]
    condition = sc.control.only_if
    if release is not None and release in sc.not_on:
        return Outcome(
            Status.skipped, "", "", f"not applicable on Debian {release}: {sc.not_on[release]}"
        )
    if not condition_met_by_parameters(profile, sc):
        assert condition is not None
        return Outcome(Status.skipped, "", "", f"not applicable: {condition.describe()}")
    if condition is not None and condition.installed:
        try:
            if condition.installed not in installed_packages(facts):
                return Outcome(Status.skipped, "", "", f"not applicable: {condition.describe()}")
        except FactsError as exc:
            return Outcome(Status.error, "", str(exc))
    try:
        return mechanism.evaluate(mechanism.parse(sc.params), facts)
    except (FactsError, ValueError, IndexError, KeyError) as exc:
        return Outcome(Status.error, "", f"evidence unreadable: {exc}")


def _missing_evidence(facts: Facts) -> str:
    run = facts.sections.get(RUN_SECTION)
    if run is None or run.rc == 0:
        return ""
    return f" (gather exited {run.rc}: {run.text.strip()[-200:]})"


def evaluate(profile: Profile, facts: Facts, today: date | None = None) -> list[CheckResult]:
    """One result per selected control, judged locally from ``facts``; its
    CIS references are those of the benchmark for the guest's release."""
    results = []
    release = guest_release(facts)
    for sc in profile.controls:
        start = time.perf_counter()
        outcome = _judge(profile, sc, facts, release)
        status, reason, observed = outcome.status, outcome.reason, outcome.observed
        if status is Status.error:
            observed += _missing_evidence(facts)
        waiver = sc.waiver
        if waiver is not None:
            if waiver.active(today):
                # The evidence is kept: a waiver explains a gap, it does not hide it.
                status, reason = Status.waived, waiver.reason
            elif status is not Status.passed:
                reason = f"waiver expired on {waiver.expires}: {waiver.reason}"
        control = sc.control
        results.append(
            CheckResult(
                id=control.id,
                title=control.title,
                area=control.area,
                status=status,
                expected=outcome.expected,
                observed=observed,
                severity=str(control.severity),
                reason=reason,
                references=control.references.strings(release),
                duration=time.perf_counter() - start,
            )
        )
    return results


def check_naive(host: Host, profile: Profile, today: date | None = None) -> list[CheckResult]:
    """The same results, gathering evidence separately for every control (a
    benchmark baseline: one or more host.run calls per control)."""
    results: list[CheckResult] = []
    for sc in profile.controls:
        facts = _gather(host, probes_for([sc]))
        single = Profile(
            id=profile.id,
            version=profile.version,
            title=profile.title,
            digest=profile.digest,
            source=profile.source,
            controls=(sc,),
            parameters=profile.parameters,
        )
        results.extend(evaluate(single, facts, today))
    return results
