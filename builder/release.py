"""goldsmith release: build, validate and sign in one step, for CI.

Each stage is skipped when its result already stands: an artifact with the
same build key is not rebuilt, and a validation.json that approves the very
image (digests recomputed) under the same profile digest is not re-run.
A rebuild that replaces an earlier template of the same name gets the next
patch version (builder.lineage.release_version) unless the spec's version is
already higher, and its manifest records the previous manifest's digest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from builder.build import build_template, plan_build
from builder.buildkey import recorded_build_key
from builder.cache import hash_file
from builder.errors import GoldsmithError
from builder.lineage import history, latest, release_version
from builder.log import log
from builder.spec import load_spec
from validate.manifest import MANIFEST_NAME, sign_artifact
from validate.results import ValidationRun
from validate.run import validate_artifact


@dataclasses.dataclass(frozen=True)
class ReleaseOutcome:
    artifact: Path
    manifest: Path
    version: str
    built: bool
    validated: bool  # False when an existing approving validation was reused
    previous_manifest: Path | None


def current_validation(artifact: Path, profile_digest: str) -> ValidationRun | None:
    """validation.json if it approves this very image under this very profile."""
    path = artifact / "validation.json"
    if not path.is_file():
        return None
    try:
        run = ValidationRun.load(path)
    except (OSError, ValueError, KeyError):
        return None
    if not run.approved or run.profile_digest != profile_digest:
        return None
    digests = hash_file(artifact / "disk.qcow2", "sha256", "sha512")
    if (run.image_sha256, run.image_sha512) != (digests["sha256"], digests["sha512"]):
        return None
    return run


def release_template(
    spec_path: Path,
    out: Path,
    key: Path,
    *,
    tests: Sequence[Path] = (),
    valid_for_days: int = 180,
    force: bool = False,
) -> ReleaseOutcome:
    spec = load_spec(spec_path)
    profile, _, _ = plan_build(spec)
    previous = latest(history(out), spec.name) if out.exists() else None
    version = release_version(spec.version, previous.version if previous else None)
    if previous is not None and not force:
        # The previous artifact may carry a bumped version: compare keys at its version.
        _, _, key_then = plan_build(dataclasses.replace(spec, version=previous.version))
        if (
            recorded_build_key(previous.path) == key_then
            and (previous.path / "disk.qcow2").is_file()
        ):
            version = previous.version
    outcome = build_template(spec_path, out, force=force, version=version)
    artifact = outcome.artifact
    run = None if force or tests else current_validation(artifact, profile.digest)
    validated = run is None
    if run is None:
        run = validate_artifact(artifact, profile_ref=str(profile.source), tests=tests)
    else:
        log.info("validation.json already approves this image; not booting it again")
    if not run.approved:
        raise GoldsmithError(
            f"{artifact.name} failed validation; it is not signed",
            hint=f"see {artifact / 'report.html'}",
        )
    previous_manifest = None
    if previous is not None and previous.path != artifact:
        candidate = previous.path / MANIFEST_NAME
        previous_manifest = candidate if candidate.is_file() else None
    manifest = sign_artifact(
        artifact, key, valid_for_days=valid_for_days, previous=previous_manifest
    )
    return ReleaseOutcome(
        artifact=artifact,
        manifest=manifest,
        version=version,
        built=not outcome.reused,
        validated=validated,
        previous_manifest=previous_manifest,
    )
