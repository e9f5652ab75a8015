"""goldsmith plan: which templates a CI pipeline must rebuild, and why, as its matrix.

For each spec, the newest signed manifest of that template under the folder of
released artifacts is compared with the spec by ``builder.outdated`` (the same
decision as ``goldsmith outdated``); a template with no manifest there was
never built, and is planned too. The plan is printed in the shape the CI
system reads:

- ``github``: one line of JSON for ``fromJSON()`` in ``strategy.matrix``,
  ``{"include": [{"spec", "name", "reasons"}]}``;
- ``gitlab``: a child pipeline (YAML) whose ``rebuild`` job extends
  ``.goldsmith-rebuild`` with one ``parallel:matrix`` entry per template
  (``SPEC``, ``TEMPLATE``), and whose ``verify`` job extends
  ``.goldsmith-verify``; both hidden jobs come from the included file. An empty
  plan is one job that says so, since GitLab refuses a pipeline without jobs;
- ``json``: every template, those to rebuild and those current, with the
  reasons, package updates and notes ``outdated --json`` gives.

Manifests are decoded, not verified, as by ``outdated``: a plan is no trust
decision. Registry references are not read: the records of released
templates come from a folder, as ``history`` reads it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import yaml

from builder.errors import InputError
from builder.lineage import history, latest
from builder.log import log
from builder.outdated import check_outdated
from builder.spec import load_spec
from hardening.strictdata import escape

# The most jobs one matrix may hold: GitHub Actions runs at most 256 per
# workflow run's matrix, GitLab at most 200 parallel:matrix permutations.
GITHUB_MATRIX_LIMIT = 256
GITLAB_MATRIX_LIMIT = 200
# Hidden jobs of the included GitLab file that the child pipeline's jobs extend.
GITLAB_REBUILD_TEMPLATE = ".goldsmith-rebuild"
GITLAB_VERIFY_TEMPLATE = ".goldsmith-verify"
NEVER_BUILT = "new"


class PlanFormat(enum.StrEnum):
    github = "github"
    gitlab = "gitlab"
    json = "json"


@dataclasses.dataclass(frozen=True)
class PlanReason:
    kind: str  # a builder.outdated ReasonKind, or "new": never built
    message: str


@dataclasses.dataclass(frozen=True)
class PlannedTemplate:
    spec: Path  # as given: CI jobs check the repository out at paths of their own
    name: str
    manifest: Path | None  # the manifest compared with; None: never built
    version: str | None
    reasons: tuple[PlanReason, ...]
    updates: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def rebuild(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": str(self.spec),
            "name": self.name,
            "version": self.version,
            "manifest": None if self.manifest is None else str(self.manifest),
            "rebuild": self.rebuild,
            "reasons": [{"kind": r.kind, "message": r.message} for r in self.reasons],
            "updates": list(self.updates),
            "notes": list(self.notes),
        }


# -- the plan -------------------------------------------------------------------


def check_records_folder(folder: Path) -> None:
    """The folder and every folder below it can be listed. history() walks
    with os.walk, which skips what it cannot read: a template whose records
    were unreadable would look never built, and be released again without
    its lineage (the version it replaces, the previous manifest's digest)."""

    def refuse(exc: OSError) -> None:
        where = exc.filename or folder
        raise InputError(where, None, f"cannot be read ({exc.strerror or exc})")

    if not folder.exists() and not folder.is_symlink():
        raise InputError(folder, None, "not found; expected a folder of released artifacts")
    if not folder.is_dir():
        raise InputError(folder, None, "expected a folder of released artifacts")
    for _, dirs, _ in os.walk(folder, onerror=refuse):
        # As history() does: hidden folders are work in progress, never records.
        dirs[:] = [d for d in dirs if not d.startswith(".")]


def find_newest_manifests(folder: Path) -> dict[str, Path]:
    """The newest signed manifest of each template name under ``folder``."""
    check_records_folder(folder)
    signed = [e for e in history(folder) if e.manifest is not None]
    found: dict[str, Path] = {}
    for name in sorted({e.name for e in signed}):
        entry = latest(signed, name)
        if entry is not None and entry.manifest is not None:
            found[name] = entry.manifest
    return found


def plan_templates(specs: Sequence[Path], folder: Path) -> list[PlannedTemplate]:
    """Each spec's template, with why it must be rebuilt (no reasons: current)."""
    manifests = find_newest_manifests(folder)
    planned: list[PlannedTemplate] = []
    seen: dict[str, Path] = {}
    for spec_path in specs:
        spec = load_spec(spec_path)
        if spec.name in seen:
            raise InputError(
                spec_path,
                "name",
                f"template {spec.name!r} is also built by {seen[spec.name]}; "
                "each template is planned once",
            )
        seen[spec.name] = spec_path
        manifest = manifests.get(spec.name)
        if manifest is None:
            reason = PlanReason(
                NEVER_BUILT, f"never built: no signed manifest of {spec.name} under {folder}"
            )
            planned.append(PlannedTemplate(spec_path, spec.name, None, None, (reason,)))
            continue
        report = check_outdated(spec_path, manifest)
        planned.append(
            PlannedTemplate(
                spec=spec_path,
                name=spec.name,
                manifest=manifest,
                version=report.version,
                reasons=tuple(PlanReason(str(r.kind), r.message) for r in report.reasons),
                updates=tuple(u.to_dict() for u in report.updates),
                notes=report.notes,
            )
        )
    return planned


def describe(template: PlannedTemplate) -> str:
    """One line for the log. Versions and reasons carry text from manifests
    and the mirror: escaped, so nothing from a document repaints the terminal."""
    if not template.rebuild:
        return escape(f"{template.name}: current ({template.version})", 2000)
    reasons = "; ".join(r.message for r in template.reasons)
    return escape(f"{template.name}: rebuild ({reasons})", 2000)


# -- the CI systems' shapes ----------------------------------------------------------


def _check_size(count: int, limit: int, system: str) -> None:
    if count > limit:
        raise InputError(
            None,
            "--format",
            f"{count} templates to rebuild; a {system} matrix holds at most {limit} jobs",
            hint="plan the specs in smaller groups",
        )


def render_github_matrix(planned: Sequence[PlannedTemplate]) -> str:
    """One line of JSON: GitHub reads a step output up to its first newline."""
    rebuild = [t for t in planned if t.rebuild]
    _check_size(len(rebuild), GITHUB_MATRIX_LIMIT, "GitHub Actions")
    include = [
        {"spec": str(t.spec), "name": t.name, "reasons": [r.message for r in t.reasons]}
        for t in rebuild
    ]
    return json.dumps({"include": include}, separators=(",", ":"))


def render_gitlab_pipeline(planned: Sequence[PlannedTemplate], include: str) -> str:
    """A child pipeline: the rebuild job's matrix and the verify job after it."""
    rebuild = [t for t in planned if t.rebuild]
    _check_size(len(rebuild), GITLAB_MATRIX_LIMIT, "GitLab parallel:matrix")
    lines = [f"# goldsmith plan: {len(rebuild)} of {len(planned)} templates to rebuild"]
    # Comments cannot break out of their line: escape() shows newlines as \x0a.
    lines += [f"#   {describe(t)}" for t in rebuild]
    doc: dict[str, Any]
    if not rebuild:
        doc = {
            "nothing-to-rebuild": {
                "script": ["echo 'goldsmith plan: every template is current'"],
            }
        }
    else:
        doc = {
            "include": [{"local": include}],
            "rebuild": {
                "extends": GITLAB_REBUILD_TEMPLATE,
                "parallel": {
                    "matrix": [{"SPEC": str(t.spec), "TEMPLATE": t.name} for t in rebuild]
                },
            },
            "verify": {"extends": GITLAB_VERIFY_TEMPLATE, "needs": ["rebuild"]},
        }
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=False)
    return "\n".join(lines) + "\n" + body


def render_json(planned: Sequence[PlannedTemplate]) -> str:
    return json.dumps(
        {
            "rebuild": [t.to_dict() for t in planned if t.rebuild],
            "current": [t.to_dict() for t in planned if not t.rebuild],
        },
        indent=2,
    )


def resolve_records_folder(value: str) -> Path:
    """--manifests: a folder; a registry reference is refused in one line."""
    path = Path(value)
    if path.exists() or path.is_symlink():
        return path
    # Imported here: requests comes with it, and a plan over a folder needs none.
    from validate.oci_reference import parse_reference

    try:
        parse_reference(value, field="--manifests")
    except InputError:
        return path  # neither: check_records_folder names what is missing
    raise InputError(
        None,
        "--manifests",
        f"{escape(value, 300)} is a registry reference; plan reads a folder of released "
        "artifacts (each <name>-<version>/ with build.json and manifest.dsse.json)",
        hint="fetch the released records into a folder first, as examples/ do",
    )


# -- the command ------------------------------------------------------------------


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--manifests",
    "manifests",
    required=True,
    metavar="DIR",
    help="Folder of released artifacts (<name>-<version>/ with build.json and "
    "manifest.dsse.json); the newest signed one of each template is compared.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice([f.value for f in PlanFormat]),
    default=PlanFormat.json.value,
    show_default=True,
    help="github: a matrix for fromJSON(); gitlab: a child pipeline; json: every template.",
)
@click.option(
    "--gitlab-include",
    default=".gitlab-ci.yml",
    show_default=True,
    metavar="FILE",
    help="The repository file defining .goldsmith-rebuild and .goldsmith-verify, "
    "included by the child pipeline.",
)
@click.pass_context
def plan(
    ctx: click.Context,
    specs: tuple[Path, ...],
    manifests: str,
    output_format: str,
    gitlab_include: str,
) -> None:
    """Print which templates of SPECS need rebuilding, and why, as a CI matrix.

    Each spec is compared with the newest signed manifest of its template
    under --manifests, as `goldsmith outdated` does (base, spec, profile,
    provisioning inputs, approval and waivers, newer packages in the mirror);
    a template with no manifest there was never built, and is planned too.

    Exit 0: nothing to rebuild (the empty plan is printed). 1: the plan lists
    templates to rebuild. 2: bad input. 3: the mirror could not be read.

    Manifests are decoded, not verified: this is no trust decision. Use
    `goldsmith verify` (or `pull --key`) before deploying a template.
    """
    if not gitlab_include.strip() or not gitlab_include.isprintable():
        raise InputError(None, "--gitlab-include", "expected a file path of the repository")
    planned = plan_templates(specs, resolve_records_folder(manifests))
    for template in planned:
        log.info("%s", describe(template))
    chosen = PlanFormat(output_format)
    if chosen is PlanFormat.github:
        click.echo(render_github_matrix(planned))
    elif chosen is PlanFormat.gitlab:
        click.echo(render_gitlab_pipeline(planned, gitlab_include), nl=False)
    else:
        click.echo(render_json(planned))
    if any(t.rebuild for t in planned):
        ctx.exit(1)


COMMANDS: list[click.Command] = [plan]
