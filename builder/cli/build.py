"""goldsmith build and doctor."""

from __future__ import annotations

import json
from pathlib import Path

import click

from builder.build import build_template
from builder.doctor import diagnose


@click.command()
@click.argument("spec", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("out"),
    show_default=True,
    help="Folder that receives <name>-<version>/.",
)
@click.option("--force", is_flag=True, help="Replace an existing artifact of the same version.")
@click.option("--json", "as_json", is_flag=True, help="Print the build record as JSON.")
def build(spec: Path, out: Path, force: bool, as_json: bool) -> None:
    """Build a sealed, hardened template from SPEC."""
    artifact = build_template(spec, out, force=force)
    if as_json:
        record = json.loads((artifact / "build.json").read_text())
        click.echo(json.dumps({"artifact": str(artifact), **record}, indent=2))
    else:
        click.echo(artifact / "disk.qcow2")


@click.command()
def doctor() -> None:
    """Check this host for what goldsmith needs."""
    findings = diagnose()
    for f in findings:
        mark = "ok " if f.ok else "MISSING" if not f.fix.startswith("enable") else "warn"
        line = f"{mark:8} {f.name}: {f.detail}"
        if f.fix and not f.ok:
            line += f"\n         fix: {f.fix}"
        click.echo(line)
    if not all(f.ok for f in findings if f.name != "accelerator"):
        raise SystemExit(1)


COMMANDS: list[click.Command] = [build, doctor]
