"""validation.json: the evidence a validation run produced, bound to one image.

Written by ``goldsmith validate``; read by the reports, by ``sign`` (which
refuses unless it approves the very image it names) and by ``verify``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hardening.results import CheckResult, Status

SCHEMA = "https://goldsmith.dev/validation/v1"


@dataclasses.dataclass(frozen=True)
class Package:
    name: str
    version: str
    architecture: str


@dataclasses.dataclass(frozen=True)
class ValidationRun:
    template_name: str
    template_version: str
    image_path: str  # as given, relative to the artifact folder when inside it
    image_sha256: str
    image_sha512: str
    profile_id: str
    profile_version: str
    profile_digest: str  # "sha256:<hex>" of the resolved profile
    started: str  # RFC 3339, UTC
    finished: str
    accelerator: str  # "kvm" | "tcg"
    goldsmith_version: str
    timings: dict[str, float]  # "boot", "facts", "checks", "user_tests", "total" (seconds)
    results: tuple[CheckResult, ...]
    packages: tuple[Package, ...]  # the guest's installed packages: the SBOM's source

    @property
    def counts(self) -> dict[str, int]:
        counts = {str(s): 0 for s in Status}
        for result in self.results:
            counts[str(result.status)] += 1
        return counts

    @property
    def approved(self) -> bool:
        """True when every check that is not waived or skipped passed.

        An empty run is never approved: nothing was proven.
        """
        blocking = [r for r in self.results if r.status not in (Status.waived, Status.skipped)]
        return bool(blocking) and all(r.status is Status.passed for r in blocking)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "template": {"name": self.template_name, "version": self.template_version},
            "image": {
                "path": self.image_path,
                "sha256": self.image_sha256,
                "sha512": self.image_sha512,
            },
            "profile": {
                "id": self.profile_id,
                "version": self.profile_version,
                "digest": self.profile_digest,
            },
            "started": self.started,
            "finished": self.finished,
            "accelerator": self.accelerator,
            "goldsmith_version": self.goldsmith_version,
            "approved": self.approved,
            "counts": self.counts,
            "timings": self.timings,
            "results": [r.to_dict() for r in self.results],
            "packages": [dataclasses.asdict(p) for p in self.packages],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationRun:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"schema: expected {SCHEMA!r}, found {data.get('schema')!r}")
        return cls(
            template_name=str(data["template"]["name"]),
            template_version=str(data["template"]["version"]),
            image_path=str(data["image"]["path"]),
            image_sha256=str(data["image"]["sha256"]),
            image_sha512=str(data["image"]["sha512"]),
            profile_id=str(data["profile"]["id"]),
            profile_version=str(data["profile"]["version"]),
            profile_digest=str(data["profile"]["digest"]),
            started=str(data["started"]),
            finished=str(data["finished"]),
            accelerator=str(data["accelerator"]),
            goldsmith_version=str(data["goldsmith_version"]),
            timings={str(k): float(v) for k, v in data["timings"].items()},
            results=tuple(CheckResult.from_dict(r) for r in data["results"]),
            packages=tuple(
                Package(str(p["name"]), str(p["version"]), str(p["architecture"]))
                for p in data["packages"]
            ),
        )

    def write(self, path: Path) -> None:
        write_json_atomically(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> ValidationRun:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


def write_json_atomically(path: Path, data: Any) -> None:
    """Write JSON so a reader never sees half a file (temp file + rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
