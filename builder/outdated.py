"""goldsmith outdated: does a released template need rebuilding?

The answer comes from the template's manifest and the world as it is now,
without booting anything:

- the base: the spec's base identity against the base the manifest records;
- the spec and profile: their digests now against the digests recorded;
- the mirror: newer versions of the installed packages (the manifest's SBOM)
  in the suite, its -updates and its -security package indexes, compared with
  dpkg's version ordering; those from -security are named security updates;
- time: an expired approval, or a waiver in the profile that has expired since.

The manifest is decoded, not verified: this answers "should we rebuild?", which
is not a trust decision. ``goldsmith verify`` is the trust decision.

The subjects it draws on live apart: Debian version ordering in
builder/debversion.py, the lenient manifest reader in builder/manifest_facts.py,
the mirror's package indexes (and why their signature is not checked) in
builder/mirror_index.py. This module keeps the decision, and re-exports those
modules' public names that were once defined here.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# The names once defined here stay importable from here (the "X as X" form
# re-exports them): the CLI and the tests import them from builder.outdated.
from builder import __version__
from builder.base import bootstrap_inputs
from builder.buildkey import base_identity
from builder.debversion import compare_versions as compare_versions
from builder.debversion import parse_version as parse_version
from builder.errors import InputError
from builder.manifest_facts import BaseRef as BaseRef
from builder.manifest_facts import ManifestFacts as ManifestFacts
from builder.manifest_facts import read_manifest as read_manifest
from builder.mirror_index import ARCHITECTURE as ARCHITECTURE
from builder.mirror_index import INDEX_VARIANTS as INDEX_VARIANTS
from builder.mirror_index import MirrorError as MirrorError
from builder.mirror_index import PackageSource as PackageSource
from builder.mirror_index import check_source as check_source
from builder.mirror_index import fetch_index as fetch_index
from builder.mirror_index import index_url as index_url
from builder.mirror_index import parse_packages as parse_packages
from builder.record import Artifact, parse_build_record
from builder.spec import DebootstrapBase, TemplateSpec, load_spec
from hardening.errors import ProfileError
from hardening.profile import Profile, load_profile
from hardening.strictdata import MAX_DOCUMENT, DataError, escape, read_regular
from validate.results import Package


class ReasonKind(enum.StrEnum):
    base = "base"
    spec = "spec"
    provision = "provision"
    profile = "profile"
    waiver = "waiver"
    expired = "expired"
    security = "security"
    packages = "packages"


@dataclasses.dataclass(frozen=True)
class Reason:
    kind: ReasonKind
    message: str


@dataclasses.dataclass(frozen=True)
class PackageUpdate:
    name: str
    architecture: str
    installed: str
    available: str
    suite: str  # the suite whose index has the newest version
    security: bool  # a newer version is in the -security index

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class OutdatedReport:
    spec: Path
    manifest: Path
    template: str
    version: str
    checked: str
    reasons: tuple[Reason, ...]
    updates: tuple[PackageUpdate, ...]
    notes: tuple[str, ...]

    @property
    def rebuild(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": str(self.spec),
            "manifest": str(self.manifest),
            "template": {"name": self.template, "version": self.version},
            "checked": self.checked,
            "rebuild": self.rebuild,
            "reasons": [{"kind": str(r.kind), "message": r.message} for r in self.reasons],
            "updates": [u.to_dict() for u in self.updates],
            "notes": list(self.notes),
        }

    def describe(self) -> str:
        """The report for a terminal. Names, versions and reasons carry text from
        the manifest and the mirror, so every line is escaped: no escape
        sequence or carriage return from a document reaches the terminal."""
        return "\n".join(escape(line, 2000) for line in self._lines())

    def _lines(self) -> list[str]:
        head = "REBUILD" if self.rebuild else "CURRENT"
        lines = [f"{head}: {self.template} {self.version} ({self.manifest})"]
        lines += [f"  - {r.message}" for r in self.reasons]
        for update in self.updates:
            mark = " [security]" if update.security else ""
            lines.append(
                f"    {update.name} ({update.architecture}): {update.installed} -> "
                f"{update.available} in {update.suite}{mark}"
            )
        lines += [f"  note: {n}" for n in self.notes]
        return lines


def check_outdated(
    spec_path: Path,
    manifest_path: Path,
    *,
    now: datetime.datetime | None = None,
    source: PackageSource | None = None,
) -> OutdatedReport:
    """Why (if at all) the template ``manifest_path`` describes needs rebuilding from
    ``spec_path``. ``source`` names the mirror for a file or url base, which has none."""
    moment = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    if source is not None:
        check_source(source)
    spec = load_spec(spec_path)
    facts = read_manifest(manifest_path)
    if facts.name != spec.name:
        raise InputError(
            manifest_path,
            "payload.predicate.template.name",
            f"the manifest is for template '{escape(facts.name, 80)}', "
            f"but {spec_path} builds {spec.name!r}",
        )
    try:
        profile = load_profile(spec.profile)
    except ProfileError as exc:
        raise InputError(exc.path, exc.field, exc.expected) from exc
    reasons: list[Reason] = []
    notes: list[str] = []
    reasons += _base_reasons(spec, facts, notes)
    reasons += _input_reasons(spec, profile, facts)
    reasons += _time_reasons(profile, facts, moment)
    if facts.builder_version and facts.builder_version != __version__:
        notes.append(f"built by goldsmith {facts.builder_version}; this is {__version__}")
    if isinstance(spec.base, DebootstrapBase):
        source = source or PackageSource(
            spec.base.suite, spec.base.mirror, spec.base.security_mirror
        )
    updates: list[PackageUpdate] = []
    if source is None:
        notes.append(
            "package updates not checked: the base is a disk image and no mirror was given"
        )
    elif not facts.packages:
        notes.append("package updates not checked: the manifest lists no packages")
    else:
        updates = find_updates(facts.packages, source, notes)
        security = [u for u in updates if u.security]
        if security:
            reasons.append(Reason(ReasonKind.security, _count(len(security), "security update")))
        if len(updates) > len(security):
            count = len(updates) - len(security)
            reasons.append(Reason(ReasonKind.packages, _count(count, "package update")))
    return OutdatedReport(
        spec=spec.path,
        manifest=manifest_path,
        template=facts.name,
        version=facts.version,
        checked=moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        reasons=tuple(reasons),
        updates=tuple(updates),
        notes=tuple(notes),
    )


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'} available"


def _base_reasons(spec: TemplateSpec, facts: ManifestFacts, notes: list[str]) -> list[Reason]:
    identity = base_identity(spec)
    if len(facts.bases) != 1:
        return [Reason(ReasonKind.base, f"the manifest records {len(facts.bases)} bases, not 1")]
    recorded = facts.bases[0]
    if recorded.source != identity["source"]:
        return [
            Reason(
                ReasonKind.base,
                f"base changed: the spec now uses a {identity['source']} base, "
                f"the template was built from a {recorded.source} base",
            )
        ]
    if not isinstance(spec.base, DebootstrapBase):
        if recorded.sha256 != identity["sha256"]:
            return [
                Reason(
                    ReasonKind.base,
                    f"base changed: sha256 {identity['sha256'][:16]}... now, "
                    f"{(recorded.sha256 or 'none')[:16]}... when built",
                )
            ]
        return []
    want: Mapping[str, Any] = bootstrap_inputs(spec.base)
    have = recorded.inputs or _inputs_from_build_record(facts, notes)
    if have is None:
        notes.append("the base's recipe inputs are not recorded; compared suite and mirror only")
        want = {"name": f"debian-{spec.base.suite}-debootstrap", "mirror": spec.base.mirror}
        have = {"name": recorded.name, "mirror": recorded.uri}
    # "key" is the cache's digest of the other inputs, not an input itself.
    changed = sorted(k for k in {*want, *have} - {"key"} if want.get(k) != have.get(k))
    if changed:
        return [Reason(ReasonKind.base, "base changed: " + ", ".join(changed) + " differ")]
    return []


def _inputs_from_build_record(facts: ManifestFacts, notes: list[str]) -> Mapping[str, Any] | None:
    """The base inputs from the build record beside the manifest, if it is the one signed."""
    path = Artifact(facts.path.parent).build_record
    try:
        # A regular file of bounded size: a FIFO planted beside the manifest
        # is skipped, not waited on.
        data = read_regular(path, MAX_DOCUMENT)
    except (OSError, DataError):
        return None
    if hashlib.sha256(data).hexdigest() != facts.build_record_sha256:
        notes.append(f"{path} is not the build record the manifest names; not used")
        return None
    try:
        record = parse_build_record(data, path)
    except InputError as exc:
        notes.append(f"{exc.message}; not used")
        return None
    return record.base[0].inputs if len(record.base) == 1 else None


def _input_reasons(spec: TemplateSpec, profile: Profile, facts: ManifestFacts) -> list[Reason]:
    reasons = []
    if facts.spec_sha256 != spec.sha256:
        reasons.append(
            Reason(
                ReasonKind.spec,
                f"spec changed: {spec.path} has sha256 {spec.sha256[:16]}..., "
                f"the template was built from {(facts.spec_sha256 or 'none')[:16]}...",
            )
        )
    reasons += _provision_reasons(spec, facts)
    if facts.profile_digest != profile.digest:
        reasons.append(
            Reason(
                ReasonKind.profile,
                f"profile changed: {profile.id} is {profile.digest[:23]}... now, "
                f"{(facts.profile_digest or 'none')[:23]}... when built",
            )
        )
    return reasons


def _provision_reasons(spec: TemplateSpec, facts: ManifestFacts) -> list[Reason]:
    """One reason per provisioning input that changed, appeared or went away,
    named by its path relative to the spec."""
    now = {i.path: i.sha256 for step in spec.provision for i in step.inputs}
    then = dict(facts.provision_inputs or {})
    reasons = []
    for path in sorted(now.keys() | then.keys()):
        shown = escape(path, 120)
        if path not in then:
            message = f"provisioning input added: {shown}"
        elif path not in now:
            message = f"provisioning input removed: {shown}"
        elif now[path] != then[path]:
            message = (
                f"provisioning input changed: {shown} has sha256 {now[path][:16]}..., "
                f"the template was built from {escape(then[path], 64)[:16]}..."
            )
        else:
            continue
        reasons.append(Reason(ReasonKind.provision, message))
    return reasons


def _time_reasons(
    profile: Profile, facts: ManifestFacts, moment: datetime.datetime
) -> list[Reason]:
    reasons = []
    if facts.valid_until:
        try:
            until = datetime.datetime.fromisoformat(facts.valid_until)
        except ValueError:
            until = None
        if until is not None and until.tzinfo is not None and until <= moment:
            reasons.append(
                Reason(ReasonKind.expired, f"the approval expired at {facts.valid_until}")
            )
    # A control waived when the template was built must be applied once its waiver
    # lapses; the profile's digest does not move when that happens, the date does.
    for selected in profile.controls:
        waiver = selected.waiver
        if waiver is not None and selected.id in facts.waived and not waiver.active(moment.date()):
            reasons.append(
                Reason(
                    ReasonKind.waiver,
                    f"the waiver for {selected.id} expired on {waiver.expires}; "
                    "the control now applies",
                )
            )
    return reasons


def find_updates(
    installed: Iterable[Package], source: PackageSource, notes: list[str]
) -> list[PackageUpdate]:
    """Installed packages with a newer version in the source's indexes."""
    wanted = {
        (p.name, p.architecture): p for p in installed if p.architecture in (ARCHITECTURE, "all")
    }
    names = frozenset(name for name, _ in wanted)
    available: dict[tuple[str, str], list[tuple[str, str]]] = {}  # -> [(version, suite)]
    for mirror, suite in source.indexes():
        packages = fetch_index(mirror, suite, names)
        if packages is None:
            if suite == source.suite:
                raise MirrorError(
                    f"{index_url(mirror, suite, 'Packages')}: no package index for "
                    f"{suite} (tried {', '.join(INDEX_VARIANTS)})",
                    hint="check the suite and mirror in the spec",
                )
            notes.append(f"no package index for {suite} at {mirror}")
            continue
        for package in packages:
            available.setdefault((package.name, package.architecture), []).append(
                (package.version, suite)
            )
    security_suite = f"{source.suite}-security"
    updates = []
    for key, package in sorted(wanted.items()):
        newer = [
            (version, suite)
            for version, suite in available.get(key, [])
            if _is_newer(version, package.version)
        ]
        if not newer:
            continue
        best_version, best_suite = newer[0]
        for version, suite in newer[1:]:
            order = compare_versions(version, best_version)
            if order > 0 or (order == 0 and suite == security_suite):
                best_version, best_suite = version, suite
        updates.append(
            PackageUpdate(
                name=package.name,
                architecture=package.architecture,
                installed=package.version,
                available=best_version,
                suite=best_suite,
                security=any(suite == security_suite for _, suite in newer),
            )
        )
    return updates


def _is_newer(candidate: str, installed: str) -> bool:
    try:
        return compare_versions(candidate, installed) > 0
    except ValueError:
        # One malformed version in a mirror's index says nothing about the rest.
        return False
