"""SLSA Provenance v1 for a template: how it was built, from what, where.

Made at signing time from build.json (the record ``sign`` has already checked
against the image), the spec's git repository when the spec sits in one, and
the CI system's environment (GitHub Actions, GitLab CI) when goldsmith runs
under one. Carried as its own in-toto attestation (``provenance.dsse.json``,
predicate type ``https://slsa.dev/provenance/v1``) about the same subjects as
the template statement, which records its payload digest.

No host path goes into any attestation: a path on the signer's machine says
nothing to a verifier and tells a stranger how that machine is laid out. The
spec is named by its path in its repository (or its file name), shipped
profiles by name, other profiles relative to the spec's repository or folder,
file bases by file name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import urllib.parse
from collections.abc import Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from builder.errors import ToolError
from builder.log import log
from builder.run import run

if TYPE_CHECKING:
    from validate.manifest import BuildRecord

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://goldsmith.dev/buildtypes/template/v1"
BUILDER_ID = "https://goldsmith.dev/builder"
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# Environment values are copied into a signed document: bounded, printable.
_ENV_VALUE = re.compile(r"[\x21-\x7e]{1,512}")


@dataclasses.dataclass(frozen=True)
class GitInfo:
    top: Path  # the repository's work tree (never written into a document)
    commit: str
    clean: bool  # the spec file is as committed


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = run(["git", "-C", folder, *args], check=False, timeout=30)
    except ToolError:  # git not installed: no commit to record
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_info(spec: Path) -> GitInfo | None:
    """The commit of the repository holding ``spec``; None outside a repository."""
    folder = spec.parent
    if not folder.is_dir():
        return None
    commit = _git(folder, "rev-parse", "--verify", "HEAD")
    top = _git(folder, "rev-parse", "--show-toplevel")
    if not commit or not top or not _COMMIT.fullmatch(commit):
        return None
    status = _git(folder, "status", "--porcelain", "--", spec.name)
    return GitInfo(Path(top), commit, status == "")


def _relative(path: Path, root: Path) -> str | None:
    try:
        return PurePosixPath(path.resolve().relative_to(root.resolve())).as_posix()
    except (ValueError, OSError):
        return None


@dataclasses.dataclass(frozen=True)
class SpecSource:
    """Where the spec came from, in words that hold on any machine."""

    path: str  # repository-relative, or the file name
    git: GitInfo | None  # only when the spec file still has the digest build.json records


def locate_spec(spec_path: str, spec_sha256: str) -> SpecSource:
    path = Path(spec_path)
    git = git_info(path) if path.is_absolute() else None
    if git is not None:
        try:
            same = hashlib.sha256(path.read_bytes()).hexdigest() == spec_sha256
        except OSError:
            same = False
        if not same:
            # The commit now checked out is not the one the template was built from.
            log.info("%s changed since the build; its commit is not recorded", path)
            git = None
    if git is not None and (relative := _relative(path, git.top)) is not None:
        return SpecSource(relative, git)
    return SpecSource(
        path.name if path.is_absolute() else PurePosixPath(spec_path).as_posix(), None
    )


def portable_profile(source: str, spec: SpecSource, spec_path: str) -> str:
    """A shipped profile by its name; another by its path in the spec's
    repository, or relative to the spec's folder, or its file name."""
    path = Path(source)
    shipped = Path(str(resources.files("hardening") / "data" / "profiles"))
    if not path.is_absolute():
        return PurePosixPath(source).as_posix()
    if path.parent.resolve() == shipped.resolve():
        return path.stem
    if spec.git is not None and (relative := _relative(path, spec.git.top)) is not None:
        return relative
    if (relative := _relative(path, Path(spec_path).parent)) is not None:
        return relative
    return path.name


def portable_uri(uri: str) -> str:
    """A file: URI becomes the file's name; other URIs (a mirror, a download) stay."""
    if uri.startswith("file:"):
        return PurePosixPath(urllib.parse.urlparse(uri).path).name
    return uri


def ci_identity(env: Mapping[str, str]) -> dict[str, str] | None:
    """The CI run goldsmith runs in, from GitHub Actions' or GitLab CI's variables."""

    def value(name: str) -> str | None:
        text = env.get(name)
        return text if text and _ENV_VALUE.fullmatch(text) else None

    server, repo, run_id = (
        value("GITHUB_SERVER_URL"),
        value("GITHUB_REPOSITORY"),
        value("GITHUB_RUN_ID"),
    )
    if server and repo and run_id and server.startswith("https://"):
        found = {
            "platform": "github-actions",
            "repository": f"{server}/{repo}",
            "runId": run_id,
            "invocationId": f"{server}/{repo}/actions/runs/{run_id}",
        }
        if workflow := value("GITHUB_WORKFLOW_REF"):
            found["workflow"] = f"{server}/{workflow}"
        return found
    server, project, pipeline = (
        value("CI_SERVER_URL"),
        value("CI_PROJECT_PATH"),
        value("CI_PIPELINE_ID"),
    )
    if server and project and pipeline and server.startswith("https://"):
        found = {
            "platform": "gitlab-ci",
            "repository": f"{server}/{project}",
            "pipelineId": pipeline,
            "invocationId": f"{server}/{project}/-/pipelines/{pipeline}",
        }
        if job := value("CI_JOB_ID"):
            found["jobId"] = job
            found["invocationId"] = f"{server}/{project}/-/jobs/{job}"
        return found
    return None


def make_provenance(
    build: BuildRecord,
    spec: SpecSource,
    *,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The SLSA Provenance v1 predicate for the template build.json describes."""
    ci = ci_identity(os.environ if env is None else env)
    dependencies: list[dict[str, Any]] = []
    if spec.git is not None:
        repository: dict[str, Any] = {
            "name": "spec repository",
            "digest": {"gitCommit": spec.git.commit},
            "annotations": {"specPath": spec.path, "specAsCommitted": spec.git.clean},
        }
        if ci is not None:
            repository["uri"] = f"git+{ci['repository']}"
        dependencies.append(repository)
    for base in build.base:
        dependencies.append(
            {
                "name": f"base:{base.name}",
                "uri": portable_uri(base.uri),
                "digest": dict(base.digest),
                "annotations": {"source": base.source},
            }
        )
    dependencies.append(
        {
            "name": f"profile:{build.profile_id}",
            "uri": portable_profile(build.profile_source, spec, build.spec_path),
            "digest": {"sha256": build.profile_digest.removeprefix("sha256:")},
        }
    )
    for step in build.provision:
        for item in step["inputs"]:
            dependencies.append(
                {
                    "name": item["path"],  # relative to the spec, as build.json records it
                    "digest": {"sha256": item["sha256"]},
                    "annotations": {"provisionStep": step["index"], "kind": step["kind"]},
                }
            )
    builder: dict[str, Any] = {
        "id": BUILDER_ID,
        "version": {"goldsmith": build.tools["goldsmith"], "qemu": build.tools["qemu"]},
    }
    if ci is not None:
        identity = {k: v for k, v in ci.items() if k != "invocationId"}
        builder["builderDependencies"] = [
            {
                "name": f"ci:{ci['platform']}",
                "uri": ci.get("workflow", ci["repository"]),
                "annotations": identity,
            }
        ]
    metadata = {"startedOn": build.started, "finishedOn": build.finished}
    if ci is not None:
        metadata["invocationId"] = ci["invocationId"]
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "spec": {"path": spec.path, "digest": {"sha256": build.spec_sha256}},
            },
            "internalParameters": {"accelerator": build.accelerator},
            "resolvedDependencies": dependencies,
        },
        "runDetails": {"builder": builder, "metadata": metadata},
    }


def summarize(predicate: Any) -> dict[str, str | None]:
    """The commit and CI run a report shows; None for what the predicate lacks."""
    found: dict[str, str | None] = {"commit": None, "specPath": None, "invocation": None}
    if not isinstance(predicate, dict):
        return found
    definition = predicate.get("buildDefinition")
    if isinstance(definition, dict):
        # Decoded, not verified (report): every level is checked for its type.
        deps = definition.get("resolvedDependencies")
        for dep in deps if isinstance(deps, list) else []:
            digest = dep.get("digest") if isinstance(dep, dict) else None
            commit = digest.get("gitCommit") if isinstance(digest, dict) else None
            if isinstance(commit, str):
                found["commit"] = commit
        parameters = definition.get("externalParameters")
        spec = parameters.get("spec") if isinstance(parameters, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("path"), str):
            found["specPath"] = spec["path"]
    details = predicate.get("runDetails")
    metadata = details.get("metadata") if isinstance(details, dict) else None
    if isinstance(metadata, dict) and isinstance(metadata.get("invocationId"), str):
        found["invocation"] = metadata["invocationId"]
    return found
