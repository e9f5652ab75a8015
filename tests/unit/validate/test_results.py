"""The approval rule (validate/results.py ``is_approved``), written once and asked
by every reader that judges a verdict: validation.json's ``approved``, verify's
recount of a signed statement, and the manifest report's "contradicts itself"."""

from __future__ import annotations

import dataclasses
import datetime
import typing
from pathlib import Path
from typing import Any

import pytest

from hardening.results import CheckResult, Status
from validate.claims import Claims, VerificationError
from validate.manifest_report import ManifestClaims, render_claims
from validate.results import ValidationRun, blocking_statuses, is_approved
from validate.trust_checks import Evidence, results_approved

P, F, E, W, S = (Status.passed, Status.failed, Status.error, Status.waived, Status.skipped)
NOW = datetime.datetime(2026, 11, 27, 8, 0, 0, tzinfo=datetime.UTC)

# (statuses, approved?)
RULE = [
    ((), False),  # nothing was proven
    ((W,), False),
    ((S, W), False),  # waived and skipped prove nothing either
    ((P,), True),
    ((P, W, S), True),
    ((P, F), False),
    ((P, E), False),
    ((E,), False),
    ((F, W), False),
]


def ids(case: Any) -> str:
    return "+".join(str(s) for s in case) or "empty" if isinstance(case, tuple) else str(case)


@pytest.mark.parametrize(("statuses", "approved"), RULE, ids=ids)
def test_the_rule(statuses: tuple[Status, ...], approved: bool) -> None:
    assert is_approved(statuses) is approved
    # A signed statement lists plain strings: the same answer.
    assert is_approved(str(s) for s in statuses) is approved


def test_blocking_statuses_leave_out_waived_and_skipped() -> None:
    assert blocking_statuses([P, W, F, S, E]) == [P, F, E]
    assert blocking_statuses(["passed", "waived", "skipped"]) == ["passed"]


def check(cid: str, status: Status) -> CheckResult:
    return CheckResult(id=cid, title=cid, area="test", status=status, expected="x", observed="x")


def results(statuses: tuple[Status, ...]) -> tuple[CheckResult, ...]:
    return tuple(check(f"C-{i}", s) for i, s in enumerate(statuses))


@pytest.mark.parametrize(("statuses", "approved"), RULE, ids=ids)
def test_validation_run_asks_the_rule(statuses: tuple[Status, ...], approved: bool) -> None:
    run = ValidationRun(
        template_name="t",
        template_version="1.0.0",
        image_path="disk.qcow2",
        image_sha256="0" * 64,
        image_sha512="0" * 128,
        profile_id="p",
        profile_version="1",
        profile_digest="sha256:" + "0" * 64,
        started="2026-11-27T08:00:00Z",
        finished="2026-11-27T08:01:00Z",
        accelerator="tcg",
        goldsmith_version="0",
        timings={},
        results=results(statuses),
        packages=(),
    )
    assert run.approved is approved
    assert run.to_dict()["approved"] is approved


@pytest.mark.parametrize(("statuses", "approved"), RULE, ids=ids)
def test_verify_recounts_with_the_rule(statuses: tuple[Status, ...], approved: bool) -> None:
    claims = Claims(
        subject_name="t-1.0.0.qcow2",
        sha256="0" * 64,
        sha512="0" * 128,
        template_name="t",
        template_version="1.0.0",
        image_format="qcow2",
        virtual_size=1,
        profile_id="p",
        profile_version="1",
        profile_digest="sha256:" + "0" * 64,
        approved=True,  # the summary flag claims approval; verify recounts anyway
        counts={},
        controls={r.id: str(r.status) for r in results(statuses)},
        approval_time=NOW,
        approval_keyid="k",
        valid_until=NOW,
    )
    evidence = Evidence(Path("disk.qcow2"), Path("m"), claims, frozenset(), NOW)
    if approved:
        results_approved(evidence)
    else:
        with pytest.raises(VerificationError, match="not approved"):
            results_approved(evidence)
    # A flag saying "not approved" is never overruled by the controls.
    with pytest.raises(VerificationError):
        results_approved(
            dataclasses.replace(evidence, claims=dataclasses.replace(claims, approved=False))
        )


def _empty_claims(**given: Any) -> ManifestClaims:
    """A manifest that claims nothing beyond ``given``: the report renders gaps."""
    hints = typing.get_type_hints(ManifestClaims)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(ManifestClaims):
        if field.default is not dataclasses.MISSING:
            continue
        fields[field.name] = () if str(hints[field.name]).startswith("tuple") else None
    fields["envelope_sha256"] = "0" * 64
    return ManifestClaims(**{**fields, **given})


@pytest.mark.parametrize(("statuses", "approved"), RULE, ids=ids)
def test_manifest_report_judges_the_verdict_with_the_rule(
    statuses: tuple[Status, ...], approved: bool
) -> None:
    controls = results(statuses)
    agreeing = render_claims(_empty_claims(approved=approved, controls=controls), now=NOW)
    contrary = render_claims(_empty_claims(approved=not approved, controls=controls), now=NOW)
    sentence = "Its verdict does not follow from the controls it lists."
    assert sentence not in agreeing
    assert sentence in contrary
