"""The build key: one digest over everything that decides what a build produces.

Two builds with the same key were asked for the same thing: the same spec
(version included, since it names the artifact), the same base, the same
resolved profile, the same apply script and the same goldsmith. A build whose
key matches the one recorded beside an existing artifact can be skipped.

What the key cannot see is the mirror moving on: a debootstrap base and
``upgrade: true`` pull whatever packages the mirror serves on the day. That is
``goldsmith outdated``'s job (builder/outdated.py), which compares the signed
SBOM with the mirror's package indexes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder import __version__
from builder.base import bootstrap_inputs
from builder.cache import digest_json, hash_file
from builder.errors import InputError
from builder.record import BUILD_KEY_FIELD as BUILD_KEY_FIELD
from builder.record import Artifact
from builder.seal import seal_script_digest
from builder.spec import DebootstrapBase, FileBase, TemplateSpec
from hardening.profile import Profile

BUILD_KEY_SCHEMA = "https://goldsmith.dev/build-key/v1"


def base_identity(spec: TemplateSpec) -> dict[str, Any]:
    """What identifies the spec's base, as cheaply as it can be known.

    A debootstrap base is identified by the inputs of its recipe (the same dict
    that addresses it in the cache); a url base by its pinned digest. A file base
    with a pinned digest is identified by that digest without reading the file:
    the build refuses a file that does not match its pin, so the pin is what will
    be built from. Only an unpinned file is hashed.
    """
    base = spec.base
    if isinstance(base, DebootstrapBase):
        return {"source": "debootstrap", "inputs": bootstrap_inputs(base)}
    if isinstance(base, FileBase):
        if base.sha256 is not None:
            return {"source": "file", "sha256": base.sha256}
        try:
            digest = hash_file(base.path)["sha256"]
        except OSError as exc:
            raise InputError(
                spec.path, "base.file.path", f"cannot read {base.path} ({exc.strerror or exc})"
            ) from None
        return {"source": "file", "sha256": digest}
    return {"source": "url", "sha256": base.sha256}


def build_key_inputs(
    spec: TemplateSpec,
    profile: Profile,
    base_identity: Mapping[str, Any],
    apply_script: str,
) -> dict[str, Any]:
    """The document the key is the digest of; kept apart so a key can be explained."""
    return {
        "schema": BUILD_KEY_SCHEMA,
        "spec": spec.canonical(),
        "base": dict(base_identity),
        "profile": profile.digest,
        # The script, not just the profile: the same profile renders differently
        # once a waiver expires or a mechanism's recipe changes.
        "apply_script": hashlib.sha256(apply_script.encode("utf-8")).hexdigest(),
        # Sealing decides what the template carries too: a new seal is a new build.
        "seal_script": seal_script_digest(),
        "goldsmith": __version__,
    }


def compute_build_key(
    spec: TemplateSpec,
    profile: Profile,
    base_identity: Mapping[str, Any],
    apply_script: str,
) -> str:
    """``sha256:<hex>`` over the canonical JSON (sorted keys) of build_key_inputs."""
    document = build_key_inputs(spec, profile, base_identity, apply_script)
    try:
        return "sha256:" + digest_json(document)
    except (TypeError, ValueError) as exc:
        # Only a programming error can get here: every input is plain data.
        raise ValueError(f"build key inputs are not JSON data: {exc}") from exc


def recorded_build_key(artifact_dir: Path) -> str | None:
    """The key recorded in ``artifact_dir``'s build record, or None if there is none
    (an unreadable or foreign record: the caller then builds again, always safe)."""
    return Artifact(artifact_dir).recorded_build_key()
