"""A manifest read leniently: what its signed statement says about the template.

``goldsmith outdated`` and ``goldsmith history`` answer "should we rebuild?"
and "what replaced what?", which are not trust decisions: the envelope is
decoded, NOT verified, and a field that is absent reads as None. A field that
is present with the wrong type is bad input (InputError naming its dotted
path). ``ManifestFacts`` is their view of the one lenient decoding of the
statement (validate/statement.py's ``read_statement``), which the report's
page reads too; ``goldsmith verify`` is the trust decision and reads statements
with the same decoder in its strict mode, after the signatures (validate/claims.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.errors import InputError
from validate.dsse import read_envelope
from validate.results import Package
from validate.statement import read_statement


@dataclasses.dataclass(frozen=True)
class BaseRef:
    name: str
    uri: str
    source: str
    sha256: str | None
    inputs: Mapping[str, Any] | None  # recipe inputs, when the manifest carries them


@dataclasses.dataclass(frozen=True)
class ManifestFacts:
    """What a manifest says about its template, read from an envelope NOT verified."""

    path: Path
    sha256: str  # of the envelope file's bytes, as a later previousManifest names it
    name: str
    version: str
    image_sha256: str | None
    bases: tuple[BaseRef, ...]
    profile_id: str | None
    profile_digest: str | None
    spec_sha256: str | None
    packages: tuple[Package, ...]
    waived: tuple[str, ...]  # control ids the manifest lists as waived
    builder_version: str | None
    build_record_sha256: str | None
    approval_time: str | None
    valid_until: str | None
    previous_manifest_sha256: str | None
    # path (relative to the spec) -> sha256 of every provisioning input, or
    # None for a manifest from before provisioning was recorded.
    provision_inputs: Mapping[str, str] | None = None


def read_manifest(path: Path) -> ManifestFacts:
    """Decode a manifest envelope WITHOUT verifying it; InputError if malformed."""
    envelope, file_sha256 = read_envelope(path, expected="a manifest (DSSE envelope)")
    statement = read_statement(path, envelope)

    # What a rebuild decision cannot do without: the template's name and
    # version, and each package's and waiver's name.
    def need(field: str, value: str | None) -> str:
        if not value:
            raise InputError(path, f"payload.predicate.{field}", "expected a string")
        return value

    for i, package in enumerate(statement.packages):
        need(f"sbom.packages[{i}].name", package.name)
        need(f"sbom.packages[{i}].version", package.version)
    waived = [need(f"waivers[{i}].control", w.control) for i, w in enumerate(statement.waivers)]
    subjects = statement.subjects
    return ManifestFacts(
        path=path,
        sha256=file_sha256,
        name=need("template.name", statement.template_name),
        version=need("template.version", statement.template_version),
        image_sha256=dict(subjects[0].digests).get("sha256") if subjects else None,
        bases=tuple(
            BaseRef(
                b.name or "", b.uri or "", b.source or "", dict(b.digests).get("sha256"), b.inputs
            )
            for b in statement.bases
        ),
        profile_id=statement.profile_id,
        profile_digest=statement.profile_digest,
        spec_sha256=statement.input_sha256("spec"),
        packages=statement.packages,
        waived=tuple(waived),
        builder_version=statement.builder_version,
        build_record_sha256=statement.build_record_sha256,
        approval_time=statement.approval_time,
        valid_until=statement.approval_valid_until,
        previous_manifest_sha256=statement.previous_manifest_sha256,
        provision_inputs=statement.provision_inputs,
    )
