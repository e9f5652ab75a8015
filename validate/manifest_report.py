"""``goldsmith report MANIFEST``: the auditor's page for a signed manifest.

The page shows what the manifest *claims*. It decodes the DSSE envelope but
deliberately does not verify it: rendering must work for an auditor who has
no trusted keys at hand, and a page that looked verified without being so
would be worse than none. The page says so at the top; ``goldsmith verify``
is the check. ``ManifestClaims`` is a view of the one lenient decoding of
the statement that ``history`` and ``outdated`` read too
(validate/statement.py's ``read_statement``).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
from pathlib import Path

import click

from builder.atomic import write_atomically
from builder.errors import GoldsmithError
from builder.log import log
from hardening.results import Status
from hardening.strictdata import DataError, loads_json
from validate import provenance, sbom
from validate.dsse import read_envelope
from validate.manifest import PrintableError
from validate.report import (
    count_statuses,
    render_page,
    select_findings,
    select_status,
    summarize_areas,
)
from validate.results import PUBLISHED_MODE, is_approved
from validate.statement import AttestationRef, Statement, read_statement


@dataclasses.dataclass(frozen=True)
class ManifestClaims(Statement):
    """What one manifest says: its statement, decoded from an envelope that has
    NOT been verified, with the envelope it came in and the attestations found
    beside it."""

    envelope_path: str
    envelope_sha256: str  # of the file bytes: what a later manifest's previousManifest names
    signature_keyids: tuple[str, ...]
    attestations: tuple[AttestationInfo, ...] = ()  # the SBOM and provenance beside it


@dataclasses.dataclass(frozen=True)
class AttestationInfo:
    """An attestation the manifest names, as found beside it (decoded, not verified)."""

    name: str
    predicate_type: str
    payload_sha256: str
    state: str  # "present", "absent", or "differs" (not the payload the manifest names)
    signer_keyids: tuple[str, ...] = ()
    facts: tuple[tuple[str, str], ...] = ()  # what a reader wants first: counts, commit
    link: str | None = None  # the CI run, when it is an https URL


def read_claims(envelope_path: Path) -> ManifestClaims:
    """Decode a manifest envelope WITHOUT verifying it; InputError for anything malformed."""
    envelope, file_sha256 = read_envelope(envelope_path)
    statement = read_statement(envelope_path, envelope)
    return ManifestClaims(
        **{f.name: getattr(statement, f.name) for f in dataclasses.fields(statement)},
        envelope_path=str(envelope_path),
        envelope_sha256=file_sha256,
        signature_keyids=tuple(s.keyid for s in envelope.signatures),
        attestations=_read_attestations(envelope_path, statement.attestation_refs),
    )


def _read_attestations(
    envelope_path: Path, refs: tuple[AttestationRef, ...]
) -> tuple[AttestationInfo, ...]:
    """The attestations the manifest names, with what each file beside it says."""
    found = []
    for ref in refs:
        name, kind, digest = ref.name, ref.predicate_type, ref.payload_sha256
        path = envelope_path.parent / Path(name).name
        # os.path: a name too long for the file system is no file, not an OSError.
        if not name or not os.path.isfile(path):
            found.append(AttestationInfo(name, kind, digest, "absent"))
            continue
        try:
            envelope, _ = read_envelope(path)
            statement = loads_json(envelope.payload)
        except (GoldsmithError, DataError):
            found.append(AttestationInfo(name, kind, digest, "differs"))
            continue
        keyids = tuple(s.keyid for s in envelope.signatures)
        if hashlib.sha256(envelope.payload).hexdigest() != digest:
            found.append(AttestationInfo(name, kind, digest, "differs", keyids))
            continue
        body = statement.get("predicate") if isinstance(statement, dict) else None
        facts: list[tuple[str, str]] = []
        link = None
        if kind == sbom.PREDICATE_TYPE and (summary := sbom.summarize(body)) is not None:
            facts = [
                ("format", f"CycloneDX {summary.spec_version}"),
                ("components", str(summary.components)),
                ("with source package", str(summary.with_source)),
                ("distribution", summary.distro or "—"),
            ]
        elif kind == provenance.PREDICATE_TYPE:
            prov = provenance.summarize(body)
            facts = [
                ("spec", prov["specPath"] or "—"),
                ("commit", prov["commit"] or "not recorded"),
                ("CI run", prov["invocation"] or "not built in CI"),
            ]
            run = prov["invocation"]
            link = run if run and run.startswith("https://") else None
        found.append(AttestationInfo(name, kind, digest, "present", keyids, tuple(facts), link))
    return tuple(found)


def _is_past(value: str | None, now: datetime.datetime) -> bool:
    """True when an RFC 3339 time or YYYY-MM-DD date lies before ``now``; unparsable: False."""
    if not value:
        return False
    try:
        if len(value) == 10:
            return datetime.date.fromisoformat(value) < now.date()
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        return False
    return when.tzinfo is not None and when < now


def render_claims(claims: ManifestClaims, *, now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    controls = list(claims.controls)
    listed_counts = count_statuses(controls)
    listed_approved = is_approved(r.status for r in controls)
    return render_page(
        "manifest.html.j2",
        m=claims,
        approved=claims.approved,
        counts=claims.counts if claims.counts is not None else listed_counts,
        total=len(controls),
        counts_disagree=claims.counts is not None and claims.counts != listed_counts,
        approval_disagrees=claims.approved is not None and claims.approved != listed_approved,
        areas=summarize_areas(controls),
        findings=select_findings(controls),
        waived=select_status(controls, Status.waived),
        controls=controls,
        expired_waivers={w.control for w in claims.waivers if _is_past(w.expires, now)},
        approval_expired=_is_past(claims.approval_valid_until, now),
        approval_signed=claims.approval_keyid in claims.signature_keyids,
        rendered=now.strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


def render_manifest_report(envelope_path: Path) -> str:
    """The auditor's HTML page for a manifest envelope (decoded, not verified)."""
    return render_claims(read_claims(envelope_path))


@click.command("report")
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the page here (default: standard output).",
)
def report(manifest: Path, out: Path | None) -> None:
    """Render MANIFEST (manifest.dsse.json) as an HTML page for auditors.

    The page shows what the manifest claims; it does not verify signatures or
    digests. Run `goldsmith verify` for that.
    """
    try:
        page = render_manifest_report(manifest)
    except GoldsmithError as exc:
        raise PrintableError(exc) from exc
    log.info("rendered %s (claims only: run 'goldsmith verify' to check them)", manifest)
    if out is None:
        click.echo(page, nl=False)
        return
    try:
        write_atomically(out, page, mode=PUBLISHED_MODE)
    except OSError as exc:
        raise GoldsmithError(f"{out}: cannot be written ({exc.strerror})") from None
    click.echo(str(out))


COMMANDS: list[click.Command] = [report]
