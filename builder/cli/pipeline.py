"""goldsmith outdated and history: what CI pipelines ask before and after a rebuild."""

from __future__ import annotations

import json
from pathlib import Path

import click

from builder.lineage import describe, entries_to_json, history
from builder.outdated import PackageSource, check_outdated
from builder.spec import DEFAULT_MIRROR, DEFAULT_SECURITY_MIRROR

_FILE = click.Path(path_type=Path, dir_okay=False)


@click.command()
@click.argument("spec", type=_FILE)
@click.option(
    "--manifest",
    type=_FILE,
    required=True,
    help="The manifest.dsse.json of the template currently released from SPEC.",
)
@click.option(
    "--suite",
    help="Debian suite to check packages against, for a file or url base (e.g. bookworm).",
)
@click.option(
    "--mirror",
    default=DEFAULT_MIRROR,
    show_default=True,
    help="Debian mirror for --suite.",
)
@click.option(
    "--security-mirror",
    default=DEFAULT_SECURITY_MIRROR,
    show_default=True,
    help="Security mirror for --suite.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the reasons and updates as JSON.")
@click.pass_context
def outdated(
    ctx: click.Context,
    spec: Path,
    manifest: Path,
    suite: str | None,
    mirror: str,
    security_mirror: str,
    as_json: bool,
) -> None:
    """Tell whether the template MANIFEST describes needs rebuilding from SPEC.

    Compares the base, spec and profile with those the manifest records, looks
    for newer packages (security updates named as such) in the mirror's indexes,
    and checks the approval and waivers against today. Nothing is booted.

    Exit 0: current. 1: rebuild needed (reasons listed). 2: bad input.
    3: the mirror could not be read.

    The manifest is decoded, not verified: this is no trust decision. Use
    `goldsmith verify` before deploying a template.
    """
    source = PackageSource(suite, mirror, security_mirror) if suite else None
    report = check_outdated(spec, manifest, source=source)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.describe())
    if report.rebuild:
        ctx.exit(1)


@click.command(name="history")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the lineage as JSON.")
def history_command(folder: Path, as_json: bool) -> None:
    """List the templates under FOLDER, each after the one it replaced.

    Templates are linked by the digest of the previous manifest recorded in each
    manifest; each entry shows its image and manifest digests and what changed:
    base, profile, spec and packages added, removed or upgraded. Manifests are
    decoded, not verified: use `goldsmith verify` for trust.
    """
    entries = history(folder)
    if as_json:
        click.echo(json.dumps(entries_to_json(entries), indent=2))
    elif entries:
        click.echo(describe(entries))
    else:
        click.echo(f"no artifact folders under {folder}", err=True)


COMMANDS: list[click.Command] = [outdated, history_command]
