"""goldsmith controls and goldsmith profile: browse the catalog and resolved profiles.

With ``--profile`` (a shipped name or a path), the controls a profile defines
itself are shown beside the shipped ones.

Results (tables, JSON) go to stdout; bad input becomes an InputError (exit 2).
"""

from __future__ import annotations

import json
from typing import Any

import click

from builder.errors import InputError
from hardening.benchmarks import Coverage, benchmark_by_id, load_benchmarks, measure_coverage
from hardening.catalog import load_catalog
from hardening.control import Control
from hardening.devsec import BENCHMARK_ID as DEVSEC
from hardening.devsec import load_devsec, measure_devsec
from hardening.errors import suggest
from hardening.profile import load_profile


def _control_dict(control: Control, params: Any = None) -> dict[str, Any]:
    refs = control.references
    return {
        "id": control.id,
        "title": control.title,
        "area": control.area,
        "severity": str(control.severity),
        "rationale": control.rationale,
        "references": list(refs.strings()),
        "no_reference_reason": refs.no_reference_reason,
        "mechanism": control.mechanism,
        "params": control.params if params is None else params,
        "parameters": dict(control.parameters),
        "only_if": None
        if control.only_if is None
        else {k: v for k, v in vars(control.only_if).items() if v},
        **(
            {
                "defined_in": str(control.source),
                "files": [
                    {"param": f.key, "path": f.path, "sha256": f.sha256} for f in control.files
                ],
            }
            if control.custom
            else {}
        ),
    }


@click.group("controls")
def controls() -> None:
    """Browse the hardening control catalog."""


@controls.command("list")
@click.option("--profile", "profile_ref", help="Only the controls this profile selects.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_controls(profile_ref: str | None, as_json: bool) -> None:
    """List controls (id, area, severity, references, title)."""
    rows: list[dict[str, Any]] = []
    if profile_ref:
        profile = load_profile(profile_ref)
        for sc in profile.controls:
            row = _control_dict(sc.control, sc.params)
            row["waiver"] = (
                None
                if sc.waiver is None
                else {
                    "reason": sc.waiver.reason,
                    "expires": sc.waiver.expires.isoformat() if sc.waiver.expires else None,
                }
            )
            rows.append(row)
    else:
        rows = [_control_dict(c) for c in load_catalog().values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    names = {b.name + " ": f"CIS{b.release} " for b in load_benchmarks().values()}
    for row in rows:
        refs = ", ".join(_short(r, names) for r in row["references"])
        waived = " [waived]" if row.get("waiver") else ""
        click.echo(
            f"{row['id']:<34} {row['area']:<12} {row['severity']:<6} "
            f"{row['title']}{waived}" + (f"  ({refs})" if refs else "")
        )


def _short(reference: str, names: dict[str, str]) -> str:
    """CIS Debian 13 v1.0.0 5.1.21 (L1) -> CIS13 5.1.21 (L1), for the table."""
    for name, short in names.items():
        if reference.startswith(name):
            return short + reference[len(name) :]
    return reference


@controls.command("show")
@click.argument("control_id")
@click.option(
    "--profile", "profile_ref", help="Look in this profile too (its own controls, its values)."
)
def show_control(control_id: str, profile_ref: str | None) -> None:
    """Show one control as JSON."""
    catalog: dict[str, Control] = dict(load_catalog())
    params: dict[str, Any] = {}
    if profile_ref:
        for sc in load_profile(profile_ref).controls:
            catalog[sc.id] = sc.control
            params[sc.id] = sc.params
    if control_id not in catalog:
        raise InputError(None, "control", f"a control id{suggest(control_id, catalog)}")
    control = catalog[control_id]
    click.echo(json.dumps(_control_dict(control, params.get(control_id)), indent=2, default=str))


STATUS_TITLES = {
    "covered": "covered",
    "waived": "selected but waived by the profile",
    "not-applied": "selected but not applied on this release",
    "choice": "alternatives not chosen, or left out on purpose",
    "manual": "manual (assessed by hand), not covered",
    "not-covered": "automated, not covered",
}


def _coverage(benchmark_id: str, level: int, profile_ref: str | None) -> Coverage:
    benchmark = benchmark_by_id(benchmark_id)
    if benchmark is None:
        ids = [b.id for b in load_benchmarks().values()] + [DEVSEC]
        raise InputError(
            None, "--benchmark", "one of " + ", ".join(ids) + suggest(benchmark_id, ids)
        )
    waived: dict[str, str] = {}
    not_applied: dict[str, str] = {}
    if profile_ref:
        selected = load_profile(profile_ref).controls
        controls = [sc.control for sc in selected]
        for sc in selected:
            if sc.waiver is not None and sc.waiver.active():
                waived[sc.id] = sc.waiver.reason
            elif benchmark.release in sc.not_on:
                not_applied[sc.id] = sc.not_on[benchmark.release]
    else:
        controls = list(load_catalog().values())
    references = []
    for control in controls:
        ref = control.references.cis_on(benchmark.key)
        if ref is not None:
            references.append((control.id, ref.items))
    return measure_coverage(benchmark, level, references, waived=waived, not_applied=not_applied)


def _coverage_dict(coverage: Coverage, profile_ref: str | None) -> dict[str, Any]:
    benchmark = coverage.benchmark
    return {
        "benchmark": benchmark.id,
        "title": f"{benchmark.title} v{benchmark.version}",
        "level": coverage.level,
        "profile": profile_ref,
        "items": len(coverage.items),
        "automated": coverage.automated(),
        "counts": {
            status: {
                "automated": coverage.count(status, automated=True),
                "manual": coverage.count(status, automated=False),
            }
            for status in STATUS_TITLES
        },
        "results": [
            {
                "item": row.item.number,
                "title": row.item.title,
                "server_level": row.item.server,
                "assessment": str(row.item.assessment),
                "status": row.status,
                "controls": list(row.controls),
                "reason": row.reason,
            }
            for row in coverage.items
        ],
    }


@controls.command("coverage")
@click.option(
    "--benchmark",
    "benchmark_id",
    required=True,
    help="cis-debian12 (CIS Debian Linux 12 v1.1.0), cis-debian13 (v1.0.0) or devsec "
    "(dev-sec linux-baseline and ssh-baseline; --level does not apply).",
)
@click.option(
    "--level",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="Server profile level; level 2 includes level 1.",
)
@click.option(
    "--profile",
    "profile_ref",
    help="Only what this profile applies (default: the whole catalog).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a report.")
def coverage_command(benchmark_id: str, level: int, profile_ref: str | None, as_json: bool) -> None:
    """Which of a CIS benchmark's server recommendations the catalog covers.

    Every recommendation at the level: covered (by which controls), one of
    goldsmith's choices among the benchmark's alternatives (with the choice),
    manual, or not covered. With devsec: every dev-sec baseline id, covered,
    not applicable (with the reason) or not covered.
    """
    if benchmark_id == DEVSEC:
        _devsec_coverage(profile_ref, as_json)
        return
    coverage = _coverage(benchmark_id, level, profile_ref)
    document = _coverage_dict(coverage, profile_ref)
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    scope = f"profile {profile_ref}" if profile_ref else "the catalog"
    click.echo(
        f"{document['title']}, Level {level} - Server, against {scope}: "
        f"{document['items']} recommendations ({document['automated']} automated)"
    )
    automated = document["automated"]
    covered = document["counts"]["covered"]["automated"]
    click.echo(f"automated covered: {covered} of {automated}")
    for status, title in STATUS_TITLES.items():
        rows = [r for r in document["results"] if r["status"] == status]
        if not rows:
            continue
        click.echo(f"\n{title} ({len(rows)}):")
        for row in rows:
            detail = ", ".join(row["controls"]) if status == "covered" else row["reason"]
            manual = " [manual]" if row["assessment"] == "manual" and status != "manual" else ""
            click.echo(
                f"  {row['item']:<10} L{row['server_level']} {row['title']}{manual}"
                + (f"  <- {detail}" if detail else "")
            )


DEVSEC_TITLES = {
    "covered": "covered",
    "waived": "selected but waived by the profile",
    "not-applicable": "not applicable to a Debian server template",
    "not-covered": "not covered",
}


def _devsec_coverage(profile_ref: str | None, as_json: bool) -> None:
    devsec = load_devsec()
    waived: dict[str, str] = {}
    if profile_ref:
        selected = load_profile(profile_ref).controls
        controls = [sc.control for sc in selected]
        waived = {
            sc.id: sc.waiver.reason
            for sc in selected
            if sc.waiver is not None and sc.waiver.active()
        }
    else:
        controls = list(load_catalog().values())
    rows = measure_devsec(devsec, [(c.id, c.references.devsec) for c in controls], waived=waived)
    counts = {status: sum(1 for r in rows if r.status == status) for status in DEVSEC_TITLES}
    document = {
        "benchmark": DEVSEC,
        "title": ", ".join(f"dev-sec {b.name} {b.version}" for b in devsec.baselines),
        "profile": profile_ref,
        "items": len(rows),
        "counts": counts,
        "results": [
            {
                "baseline": r.baseline,
                "item": r.ident,
                "title": r.title,
                "status": r.status,
                "controls": list(r.controls),
                "reason": r.reason,
            }
            for r in rows
        ],
    }
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    scope = f"profile {profile_ref}" if profile_ref else "the catalog"
    click.echo(f"{document['title']}, against {scope}: {len(rows)} controls")
    click.echo(
        f"covered: {counts['covered']} of {len(rows)}, not applicable: {counts['not-applicable']}"
    )
    for status, title in DEVSEC_TITLES.items():
        shown = [r for r in rows if r.status == status]
        if not shown:
            continue
        click.echo(f"\n{title} ({len(shown)}):")
        for r in shown:
            detail = ", ".join(r.controls) if status == "covered" else r.reason
            click.echo(f"  {r.ident:<11} {r.title}" + (f"  <- {detail}" if detail else ""))


@click.group("profile")
def profile() -> None:
    """Inspect hardening profiles."""


@profile.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
def list_profiles_command(as_json: bool) -> None:
    """List the shipped profiles: id, version, controls, waivers and title."""
    from hardening.profile import list_profiles

    rows = []
    for name in list_profiles():
        resolved = load_profile(name)
        waived = sum(1 for sc in resolved.controls if sc.waiver is not None)
        rows.append(
            {
                "id": resolved.id,
                "version": resolved.version,
                "controls": len(resolved.controls),
                "waived": waived,
                "title": resolved.title,
                "digest": resolved.digest,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['id']:<20} {row['version']:<8} {row['controls']:>4} controls "
            f"{row['waived']:>2} waived  {row['title']}"
        )


@profile.command("show")
@click.argument("profile_ref")
def show_profile(profile_ref: str) -> None:
    """Show a resolved profile (a shipped name or a YAML path) as JSON."""
    resolved = load_profile(profile_ref)
    document = resolved.canonical()
    document["digest"] = resolved.digest
    document["source"] = str(resolved.source)
    click.echo(json.dumps(document, indent=2, default=str))


COMMANDS: list[click.Command] = [controls, profile]
