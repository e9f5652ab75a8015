"""goldsmith validate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hardening.results import Status
from validate.run import validate_artifact


@click.command()
@click.argument("artifact", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--profile", "profile_ref", help="Profile name or file (default: the one built with)."
)
@click.option(
    "--tests",
    "tests",
    multiple=True,
    type=click.Path(path_type=Path),
    help="testinfra test files or folders to run against the guest (repeatable).",
)
@click.option("--boot-timeout", type=int, default=900, show_default=True, help="Seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def validate(
    artifact: Path,
    profile_ref: str | None,
    tests: tuple[Path, ...],
    boot_timeout: int,
    as_json: bool,
) -> None:
    """Boot ARTIFACT's template from firmware and prove every control.

    Exit 0 when every check that is not waived passed, 1 when some failed, 2 on bad input.
    """
    run = validate_artifact(
        artifact, profile_ref=profile_ref, tests=tests, boot_timeout=boot_timeout
    )
    if as_json:
        summary = {
            "artifact": str(artifact),
            "approved": run.approved,
            "image": {"sha256": run.image_sha256},
            "profile": {"id": run.profile_id, "digest": run.profile_digest},
            "counts": run.counts,
            "timings": run.timings,
            "failed": [r.id for r in run.results if r.status in (Status.failed, Status.error)],
            "reports": {
                name: str(artifact / name)
                for name in ("validation.json", "junit.xml", "report.html")
            },
        }
        click.echo(json.dumps(summary, indent=2))
    else:
        for r in run.results:
            if r.status in (Status.failed, Status.error):
                click.echo(
                    f"{r.status.upper():7} {r.id} {r.title}\n"
                    f"        expected: {r.expected}\n        observed: {r.observed}",
                    err=True,
                )
        verdict = "APPROVED" if run.approved else "NOT APPROVED"
        counts = ", ".join(f"{n} {s}" for s, n in run.counts.items() if n)
        click.echo(f"{verdict}: {counts}", err=True)
        click.echo(artifact / "report.html")
    raise SystemExit(0 if run.approved else 1)


COMMANDS: list[click.Command] = [validate]
