"""A manifest read leniently: what its signed statement says about the template.

``goldsmith outdated`` and ``goldsmith history`` answer "should we rebuild?"
and "what replaced what?", which are not trust decisions: the envelope is
decoded, NOT verified, and a field that is absent reads as None. A field that
is present with the wrong type is bad input (InputError naming its dotted
path). ``goldsmith verify`` is the trust decision and reads statements strictly,
after the signatures (validate/verify.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from validate.dsse import read_envelope
from validate.manifest import LenientFields, decode_statement
from validate.results import Package


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
    top = LenientFields(path, "payload", decode_statement(path, envelope))
    predicate = top.obj("predicate")
    template = predicate.obj("template")
    subjects = top.objs("subject")
    bases = []
    for item in predicate.objs("base"):
        inputs = item.data.get("inputs")
        bases.append(
            BaseRef(
                name=item.text("name") or "",
                uri=item.text("uri") or "",
                source=item.text("source") or "",
                sha256=item.obj("digest").text("sha256"),
                inputs=inputs if isinstance(inputs, dict) else None,
            )
        )
    packages = tuple(
        Package(p.need("name"), p.need("version"), p.text("architecture") or "")
        for p in predicate.obj("sbom").objs("packages")
    )
    waived = [w.need("control") for w in predicate.objs("waivers")]
    approval = predicate.obj("approval")
    provision_inputs = None
    if "provision" in predicate.data:
        provision_inputs = {
            i.need("path"): i.need("sha256")
            for step in predicate.objs("provision")
            for i in step.objs("inputs")
        }
    return ManifestFacts(
        path=path,
        sha256=file_sha256,
        name=template.need("name"),
        version=template.need("version"),
        image_sha256=subjects[0].obj("digest").text("sha256") if subjects else None,
        bases=tuple(bases),
        profile_id=predicate.obj("profile").text("id"),
        profile_digest=predicate.obj("profile").text("digest"),
        spec_sha256=predicate.obj("inputs").obj("spec").obj("digest").text("sha256"),
        packages=packages,
        waived=tuple(waived),
        builder_version=predicate.obj("builder").text("version"),
        build_record_sha256=predicate.obj("build").obj("record").obj("digest").text("sha256"),
        approval_time=approval.text("time"),
        valid_until=approval.text("validUntil"),
        previous_manifest_sha256=predicate.obj("previousManifest").obj("digest").text("sha256"),
        provision_inputs=provision_inputs,
    )
