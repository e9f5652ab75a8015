"""goldsmith build, release and doctor."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from builder.build import build_template
from builder.doctor import diagnose
from builder.errors import GoldsmithError
from builder.parallel import run_parallel
from builder.record import Artifact

SPECS = click.argument(
    "specs", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False)
)
OUT = click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("out"),
    show_default=True,
    help="Folder that receives <name>-<version>/.",
)
JOBS = click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Specs processed at once (each in its own process).",
)
FORCE = click.option(
    "--force", is_flag=True, help="Rebuild even when an artifact with the same inputs exists."
)
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")


def _entries(spec: Path, exit_code: int, result: dict[str, Any] | None) -> str:
    """--json's one shape, whatever the number of specs: a list of
    {spec, exit_code, result}, result null for a spec that failed."""
    return json.dumps([{"spec": str(spec), "exit_code": exit_code, "result": result}], indent=2)


@contextlib.contextmanager
def _json_failure(spec: Path, as_json: bool) -> Iterator[None]:
    """A single spec that fails still prints its entry (the error goes to stderr)."""
    try:
        yield
    except GoldsmithError as exc:
        if as_json:
            click.echo(_entries(spec, exc.exit_code, None))
        raise


def _fan_out(
    command: str, specs: tuple[Path, ...], extra: list[str], jobs: int, as_json: bool
) -> None:
    """Run one child per spec; exit with the worst child's exit code."""
    results = run_parallel(command, specs, extra, jobs)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"spec": str(r.spec), "exit_code": r.exit_code, "result": r.output}
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        for r in results:
            where = (r.output or {}).get("artifact", "-")
            click.echo(f"{r.spec}\t{'ok' if r.exit_code == 0 else f'exit {r.exit_code}'}\t{where}")
    raise SystemExit(max(r.exit_code for r in results))


@click.command()
@SPECS
@OUT
@JOBS
@FORCE
@AS_JSON
def build(specs: tuple[Path, ...], out: Path, jobs: int, force: bool, as_json: bool) -> None:
    """Build sealed, hardened templates from SPECS.

    A build whose inputs (base, spec, profile, apply script, goldsmith version)
    match the existing artifact's build key boots nothing and returns it.
    """
    if len(specs) > 1:
        _fan_out(
            "build", specs, ["--out", str(out), *(["--force"] if force else [])], jobs, as_json
        )
    with _json_failure(specs[0], as_json):
        outcome = build_template(specs[0], out, force=force)
    if as_json:
        record = Artifact(outcome.artifact).read_build_record()
        result = {"artifact": str(outcome.artifact), "reused": outcome.reused, **record.to_dict()}
        click.echo(_entries(specs[0], 0, result))
    else:
        click.echo(Artifact(outcome.artifact).image)


@click.command()
@SPECS
@click.option(
    "--key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Signing key (goldsmith keygen).",
)
@OUT
@click.option(
    "--tests",
    multiple=True,
    type=click.Path(path_type=Path),
    help="testinfra files or folders for validation (repeatable).",
)
@click.option(
    "--valid-for",
    "valid_for",
    type=click.IntRange(1, 3650),
    default=180,
    show_default=True,
    help="Days the approval stays valid.",
)
@JOBS
@FORCE
@AS_JSON
def release(
    specs: tuple[Path, ...],
    key: Path,
    out: Path,
    tests: tuple[Path, ...],
    valid_for: int,
    jobs: int,
    force: bool,
    as_json: bool,
) -> None:
    """Build, validate and sign SPECS: the one command a CI pipeline runs.

    Exit 0 when every template is signed, 1 when one failed to build or validate
    (nothing unproven is signed), 2 on bad input.
    """
    from builder.release import release_template

    if len(specs) > 1:
        extra = ["--key", str(key), "--out", str(out), "--valid-for", str(valid_for)]
        extra += [arg for t in tests for arg in ("--tests", str(t))]
        _fan_out("release", specs, extra + (["--force"] if force else []), jobs, as_json)
    with _json_failure(specs[0], as_json):
        outcome = release_template(
            specs[0], out, key, tests=tests, valid_for_days=valid_for, force=force
        )
    if as_json:
        result = {
            "artifact": str(outcome.artifact),
            "manifest": str(outcome.manifest),
            "version": outcome.version,
            "built": outcome.built,
            "validated": outcome.validated,
            "previous_manifest": None
            if outcome.previous_manifest is None
            else str(outcome.previous_manifest),
        }
        click.echo(_entries(specs[0], 0, result))
    else:
        click.echo(outcome.manifest)


@click.command()
def doctor() -> None:
    """Check this host for what goldsmith needs."""
    findings = diagnose()
    for f in findings:
        mark = "ok" if f.ok else "warn" if f.name == "accelerator" else "MISSING"
        line = f"{mark:8} {f.name}: {f.detail}"
        if f.fix and not f.ok:
            line += f"\n         fix: {f.fix}"
        click.echo(line)
    if not all(f.ok for f in findings if f.name != "accelerator"):
        raise SystemExit(1)


COMMANDS: list[click.Command] = [build, release, doctor]
