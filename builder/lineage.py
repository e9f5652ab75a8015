"""Lineage: which template replaced which, and what changed each time.

Versions of rebuilds
--------------------
A rebuild that replaces a template (same spec, newer packages or base) gets a
new version, because the version names the artifact and the image inside it
changed. ``next_version`` gives it:

- ``X.Y.Z`` becomes ``X.Y.(Z+1)``: a rebuild is a patch release.
  ``X.Y`` and ``X`` count as ``X.Y.0`` and ``X.0.0`` (``1.4`` -> ``1.4.1``).
- A pre-release or revision suffix (``X.Y.Z-N``, ``X.Y.Z-rc.1``) and build
  metadata (``X.Y.Z+build.7``) are dropped: ``1.2.3-2`` -> ``1.2.4``,
  ``1.2.3+20261127`` -> ``1.2.4``. A suffix describes one particular build of
  X.Y.Z; the rebuild is a new patch release, not another variant of the old one.
- Anything else (four numbers, letters in the numbers) is refused: such a
  template must set its version in the spec for every release.

``release_version`` decides between the spec and the rule: a spec whose version
sorts above the template it replaces was bumped by hand and that version is
used as written; otherwise the replaced template's version goes through
``next_version``. Versions therefore only ever go up along a lineage.

History
-------
``history`` reads the artifact folders under a directory (each
``<name>-<version>/`` with build.json and, once signed, manifest.dsse.json) and
links each manifest to the one it replaced by ``predicate.previousManifest``,
the sha256 of the previous envelope file's bytes. Manifests are decoded, not
verified: history is a record to read, ``goldsmith verify`` is the trust decision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from builder.debversion import compare_versions
from builder.errors import InputError
from builder.log import log
from builder.manifest_facts import ManifestFacts, read_manifest
from builder.record import BUILD_RECORD_NAME, Artifact, BuildRecord, read_build_record_bytes
from hardening.strictdata import MAX_DOCUMENT, DataError, escape, loads_json, read_regular
from validate.results import Package
from validate.statement import LenientFields

_SEMVER = re.compile(
    r"(?P<major>0|[1-9][0-9]*)(?:\.(?P<minor>0|[1-9][0-9]*))?(?:\.(?P<patch>0|[1-9][0-9]*))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+(?P<build>[0-9A-Za-z.-]+))?"
)


def _semver(version: str) -> tuple[int, int, int, str | None]:
    match = _SEMVER.fullmatch(version)
    if match is None:
        raise ValueError(
            f"version {version!r} is not X.Y.Z (optionally -suffix or +build); "
            "set the version in the spec"
        )
    return (
        int(match["major"]),
        int(match["minor"] or 0),
        int(match["patch"] or 0),
        match["pre"],
    )


def next_version(previous: str) -> str:
    """The version of a rebuild replacing ``previous``: the patch level plus one."""
    major, minor, patch, _ = _semver(previous)
    return f"{major}.{minor}.{patch + 1}"


def _semver_above(a: str, b: str) -> bool:
    """True when ``a`` has higher semver precedence than ``b`` (build metadata ignored)."""
    major_a, minor_a, patch_a, pre_a = _semver(a)
    major_b, minor_b, patch_b, pre_b = _semver(b)
    if (major_a, minor_a, patch_a) != (major_b, minor_b, patch_b):
        return (major_a, minor_a, patch_a) > (major_b, minor_b, patch_b)
    # A release sorts above its own pre-releases.
    return pre_a is None and pre_b is not None


def release_version(spec_version: str, previous: str | None) -> str:
    """The version a release of the spec gets when it replaces ``previous``."""
    if previous is None:
        return spec_version
    if _semver_above(spec_version, previous):
        return spec_version
    return next_version(previous)


# -- history -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Change:
    old: str | None
    new: str | None

    def to_dict(self) -> dict[str, str | None]:
        return {"old": self.old, "new": self.new}


@dataclasses.dataclass(frozen=True)
class PackageChange:
    name: str
    architecture: str
    old: str | None  # None: added
    new: str | None  # None: removed

    @property
    def kind(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        try:
            return "upgraded" if compare_versions(self.new, self.old) > 0 else "downgraded"
        except ValueError:
            return "changed"

    def to_dict(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "architecture": self.architecture,
            "change": self.kind,
            "old": self.old,
            "new": self.new,
        }


@dataclasses.dataclass(frozen=True)
class Changes:
    """What differs from the entry this one replaced."""

    base: Change | None
    profile: Change | None
    spec: Change | None
    packages: tuple[PackageChange, ...] | None  # None: an SBOM is missing on either side

    def counts(self) -> dict[str, int]:
        counts = {"added": 0, "removed": 0, "upgraded": 0, "downgraded": 0, "changed": 0}
        for change in self.packages or ():
            counts[change.kind] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.to_dict() if self.base else None,
            "profile": self.profile.to_dict() if self.profile else None,
            "spec": self.spec.to_dict() if self.spec else None,
            "packages": None
            if self.packages is None
            else {
                "counts": self.counts(),
                "changes": [p.to_dict() for p in self.packages],
            },
        }


@dataclasses.dataclass(frozen=True)
class Entry:
    path: Path  # the artifact folder
    name: str
    version: str
    built: str | None  # when the build finished (build.json)
    approved: str | None  # when the manifest was signed
    image_sha256: str
    base_sha256: str | None
    profile_digest: str | None
    spec_sha256: str | None
    manifest_sha256: str | None  # None: not signed
    previous_manifest_sha256: str | None  # as the manifest records it
    previous: Path | None  # the folder of the entry it replaced, when found under DIR
    packages: tuple[Package, ...] | None
    changes: Changes | None
    notes: tuple[str, ...]

    @property
    def manifest(self) -> Path | None:
        return Artifact(self.path).manifest if self.manifest_sha256 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.name,
            "version": self.version,
            "built": self.built,
            "approved": self.approved,
            "image": {"sha256": self.image_sha256},
            "base": {"sha256": self.base_sha256},
            "profile": {"digest": self.profile_digest},
            "spec": {"sha256": self.spec_sha256},
            "manifest": None if self.manifest_sha256 is None else {"sha256": self.manifest_sha256},
            "previousManifest": None
            if self.previous_manifest_sha256 is None
            else {"sha256": self.previous_manifest_sha256},
            "previous": None if self.previous is None else str(self.previous),
            "changes": None if self.changes is None else self.changes.to_dict(),
            "notes": list(self.notes),
        }


def find_artifacts(root: Path) -> list[Path]:
    """Folders under ``root`` holding a build.json; hidden (in-progress) folders skipped."""
    if not root.is_dir():
        raise InputError(root, None, "expected a folder of artifact folders")
    found = []
    for folder, dirs, files in os.walk(root):
        # Work folders (.name.work-*) and replaced ones are hidden: never history.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        # A failed build keeps its build.json for the post-mortem; it is no template.
        if BUILD_RECORD_NAME in files and ".FAILED-" not in Path(folder).name:
            found.append(Path(folder))
            dirs[:] = []  # an artifact's own folder holds no further artifacts
    return found


def _read_json(path: Path) -> Any:
    """A regular file of bounded size, so a FIFO or device in an artifact folder
    is an error and not a hang."""
    try:
        return loads_json(read_regular(path, MAX_DOCUMENT))
    except DataError as exc:
        raise InputError(path, None, f"cannot be read: {exc}") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot be read ({exc.strerror or exc})") from None


def _packages_from_validation(folder: Path) -> tuple[Package, ...] | None:
    path = Artifact(folder).validation_record
    if not path.is_file():
        return None
    doc = LenientFields(path, "", _read_json(path))
    if "packages" not in doc.data:
        return None
    return tuple(
        Package(p.need("name"), p.need("version"), p.text("architecture") or "")
        for p in doc.objs("packages")
    )


@dataclasses.dataclass
class _Draft:
    path: Path
    record: BuildRecord
    manifest: ManifestFacts | None
    packages: tuple[Package, ...] | None
    notes: list[str]

    @property
    def built(self) -> str:
        return self.record.finished


def _load(folder: Path) -> _Draft:
    artifact = Artifact(folder)
    record_bytes, record = read_build_record_bytes(artifact.build_record)
    notes: list[str] = []
    manifest = read_manifest(artifact.manifest) if artifact.manifest.is_file() else None
    packages = manifest.packages if manifest and manifest.packages else None
    if manifest is not None:
        if manifest.image_sha256 != record.image_sha256:
            notes.append("the manifest names another image than build.json")
        digest = hashlib.sha256(record_bytes).hexdigest()
        if manifest.build_record_sha256 not in (None, digest):
            notes.append("build.json is not the build record the manifest names")
    if packages is None:
        packages = _packages_from_validation(folder)
    return _Draft(folder, record, manifest, packages, notes)


def _diff_packages(
    old: Iterable[Package] | None, new: Iterable[Package] | None
) -> tuple[PackageChange, ...] | None:
    if old is None or new is None:
        return None
    before = {(p.name, p.architecture): p.version for p in old}
    after = {(p.name, p.architecture): p.version for p in new}
    changes = [
        PackageChange(name, arch, before.get((name, arch)), after.get((name, arch)))
        for name, arch in sorted(before.keys() | after.keys())
        if before.get((name, arch)) != after.get((name, arch))
    ]
    return tuple(changes)


def _field(old: str | None, new: str | None) -> Change | None:
    return None if old == new else Change(old, new)


def _base_sha256(record: BuildRecord) -> str:
    # A template built from several bases is named by the first (the one build makes).
    return record.base[0].digest["sha256"]


def _entry(draft: _Draft, previous: _Draft | None) -> Entry:
    record = draft.record
    changes = None
    if previous is not None:
        old = previous.record
        changes = Changes(
            base=_field(_base_sha256(old), _base_sha256(record)),
            profile=_field(old.profile_digest, record.profile_digest),
            spec=_field(old.spec_sha256, record.spec_sha256),
            packages=_diff_packages(previous.packages, draft.packages),
        )
    manifest = draft.manifest
    return Entry(
        path=draft.path,
        name=record.template_name,
        version=record.template_version,
        built=record.finished,
        approved=manifest.approval_time if manifest else None,
        image_sha256=record.image_sha256,
        base_sha256=_base_sha256(record),
        profile_digest=record.profile_digest,
        spec_sha256=record.spec_sha256,
        manifest_sha256=manifest.sha256 if manifest else None,
        previous_manifest_sha256=manifest.previous_manifest_sha256 if manifest else None,
        previous=previous.path if previous else None,
        packages=draft.packages,
        changes=changes,
        notes=tuple(draft.notes),
    )


def history(root: Path) -> list[Entry]:
    """Every artifact under ``root``, each lineage from its first template to its latest.

    Lineages are ordered by template name, then by when their first template was
    built; a template comes right after the one it replaced. Where one template was
    replaced twice (a fork), both follow it, oldest first.
    """
    drafts = [_load(folder) for folder in find_artifacts(root)]
    by_manifest = {d.manifest.sha256: d for d in drafts if d.manifest is not None}
    parent: dict[int, _Draft] = {}
    children: dict[int, list[_Draft]] = {}
    for draft in drafts:
        wanted = draft.manifest.previous_manifest_sha256 if draft.manifest else None
        if wanted is None:
            continue
        found = by_manifest.get(wanted)
        if found is None or found is draft:
            draft.notes.append(f"the manifest it replaced (sha256 {wanted[:16]}...) is not here")
            continue
        parent[id(draft)] = found
        children.setdefault(id(found), []).append(draft)

    def order(draft: _Draft) -> tuple[str, str, str]:
        return (draft.record.template_name, draft.built, draft.path.name)

    entries: list[Entry] = []
    seen: set[int] = set()

    def visit(draft: _Draft) -> None:
        stack = [draft]
        while stack:
            current = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            entries.append(_entry(current, parent.get(id(current))))
            stack.extend(sorted(children.get(id(current), []), key=order, reverse=True))

    for draft in sorted((d for d in drafts if id(d) not in parent), key=order):
        visit(draft)
    # Only a cycle of previousManifest links is left unvisited; list it rather than hide it.
    for draft in sorted((d for d in drafts if id(d) not in seen), key=order):
        log.warning("%s: its previousManifest links form a cycle", draft.path)
        visit(draft)
    return entries


def latest(entries: Iterable[Entry], name: str) -> Entry | None:
    """The newest template of ``name`` that nothing under the same root has replaced."""
    named = [e for e in entries if e.name == name]
    replaced = {e.previous for e in named if e.previous is not None}
    tips = [e for e in named if e.path not in replaced]
    return max(tips, key=lambda e: (e.built or "", e.path.name), default=None)


def describe(entries: Iterable[Entry]) -> str:
    """The history as text, one block per template."""
    lines: list[str] = []
    for entry in entries:
        head = f"{entry.name} {entry.version}  built {entry.built or '?'}"
        if entry.approved:
            head += f"  signed {entry.approved}"
        lines.append(head)
        lines.append(f"  folder    {entry.path}")
        lines.append(f"  image     sha256:{entry.image_sha256}")
        manifest = f"sha256:{entry.manifest_sha256}" if entry.manifest_sha256 else "(not signed)"
        lines.append(f"  manifest  {manifest}")
        if entry.previous is not None:
            lines.append(f"  replaces  {entry.previous.name}")
        if entry.changes is not None:
            lines += _describe_changes(entry.changes)
        lines += [f"  note: {n}" for n in entry.notes]
        lines.append("")
    # Names, versions, times, digests and packages come from records and
    # manifests anyone may have written (history decodes, never verifies): a
    # carriage return or an escape sequence in one could repaint the terminal.
    return "\n".join(escape(line, 100_000) for line in lines).rstrip("\n")


def _describe_changes(changes: Changes) -> list[str]:
    lines = []
    for label, change in (
        ("base", changes.base),
        ("profile", changes.profile),
        ("spec", changes.spec),
    ):
        if change is not None:
            lines.append(f"  {label:9} {_short(change.old)} -> {_short(change.new)}")
    if changes.packages is None:
        lines.append("  packages  (no SBOM to compare)")
    elif not changes.packages:
        lines.append("  packages  unchanged")
    else:
        counts = ", ".join(f"{n} {kind}" for kind, n in changes.counts().items() if n)
        lines.append(f"  packages  {counts}")
        for p in changes.packages:
            versions = f"{p.old} -> {p.new}" if p.old and p.new else p.old or p.new
            lines.append(f"    {p.kind:10} {p.name} ({p.architecture}) {versions}")
    if not any((changes.base, changes.profile, changes.spec, changes.packages)):
        lines.insert(0, "  changes   none recorded")
    return lines


def _short(value: str | None) -> str:
    if value is None:
        return "(none)"
    # Digests are recorded both as "sha256:<hex>" and as bare sha256 hex.
    algorithm, colon, digest = value.partition(":")
    return f"{algorithm}:{digest[:12]}" if colon else f"sha256:{value[:12]}"


def entries_to_json(entries: Iterable[Entry]) -> list[Mapping[str, Any]]:
    return [e.to_dict() for e in entries]
