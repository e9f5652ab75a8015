"""validation.json: the evidence a validation run produced, bound to one image.

Written by ``goldsmith validate``; read by the reports, by ``sign`` (which
refuses unless it approves the very image it names) and by ``verify``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from builder.atomic import write_atomically
from hardening.results import CheckResult, Status
from hardening.strictdata import escape, load_json_file

# The JSON Schema whose $id this is: validate/schemas/validation-v1.schema.json
# (build.json's and the template statement's are beside it).
SCHEMA = "https://goldsmith.dev/validation/v1"


class RecordError(ValueError):
    """validation.json does not say what a validation record says; names the field."""

    def __init__(self, field: str | None, expected: str) -> None:
        super().__init__(f"{field}: {expected}" if field else expected)
        self.field = field
        self.expected = expected


def blocking_statuses(statuses: Iterable[str]) -> list[str]:
    """The statuses that decide approval: all but waived and skipped. A waiver is
    a decision recorded in the profile, a skip a check that does not apply to this
    template; neither proves nor disproves anything about the image."""
    return [s for s in statuses if s not in (Status.waived, Status.skipped)]


def is_approved(statuses: Iterable[str]) -> bool:
    """The approval rule, written here only: every check that is not waived or
    skipped passed, and there is at least one (an empty run proved nothing).

    ``statuses`` are ``Status`` members or their values, as a signed statement
    lists them. validation.json's ``approved``, sign's refusal, verify's recount
    and the manifest report's consistency check all ask this function.
    """
    blocking = blocking_statuses(statuses)
    return bool(blocking) and all(s == Status.passed for s in blocking)


def _text(data: Any, dotted: str, prefix: str = "") -> str:
    field = f"{prefix}.{dotted}" if prefix else dotted
    value = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise RecordError(field, "missing")
        value = value[part]
    if not isinstance(value, str):
        raise RecordError(field, "expected a string")
    return value


def _read_package(raw: Any, field: str) -> Package:
    if not isinstance(raw, dict):
        raise RecordError(field, "expected an object with name, version and architecture")
    # The source package came later: records without it read as unknown ("").
    source = {k: _text(raw, k, field) for k in ("source", "source_version") if k in raw}
    return Package(
        _text(raw, "name", field),
        _text(raw, "version", field),
        _text(raw, "architecture", field),
        **source,
    )


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise RecordError(key, "expected a list")
    return value


def _read_results(data: dict[str, Any]) -> tuple[CheckResult, ...]:
    results = []
    seen: set[str] = set()
    for i, raw in enumerate(_list(data, "results")):
        field = f"results[{i}]"
        if not isinstance(raw, dict):
            raise RecordError(field, "expected a result object")
        try:
            result = CheckResult.from_dict(raw)
        except KeyError as exc:
            raise RecordError(field, f"missing {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise RecordError(field, f"expected a result object ({exc})") from None
        # Two results for one control let each reader pick the one it likes:
        # a control listed failed and then passed must never read as passed.
        if result.id in seen:
            raise RecordError(f"{field}.id", f"duplicate control id {escape(repr(result.id))}")
        seen.add(result.id)
        results.append(result)
    return tuple(results)


def _read_timings(data: dict[str, Any]) -> dict[str, float]:
    timings = data.get("timings")
    if not isinstance(timings, dict):
        raise RecordError("timings", "expected a mapping of stage to seconds")
    out: dict[str, float] = {}
    for name, value in timings.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordError(f"timings.{escape(name)}", "expected a number of seconds")
        if not math.isfinite(value) or not 0 <= value < 1e9:
            raise RecordError(f"timings.{escape(name)}", "expected a number of seconds")
        out[name] = float(value)
    return out


@dataclasses.dataclass(frozen=True)
class Package:
    name: str
    version: str
    architecture: str
    source: str = ""  # the Debian source package (dpkg's ${source:Package}); "" if unknown
    source_version: str = ""  # ${source:Version}: differs from version after a binNMU


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
        """The approval rule (``is_approved``) over this run's results."""
        return is_approved(r.status for r in self.results)

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
    def from_dict(cls, data: Any) -> ValidationRun:
        """The run a validation.json document describes; RecordError (a ValueError)
        naming the field otherwise."""
        if not isinstance(data, dict):
            raise RecordError(None, "expected a JSON object (a validation record)")
        if data.get("schema") != SCHEMA:
            raise RecordError("schema", f"expected {SCHEMA!r}")
        packages = [
            _read_package(raw, f"packages[{i}]") for i, raw in enumerate(_list(data, "packages"))
        ]
        return cls(
            template_name=_text(data, "template.name"),
            template_version=_text(data, "template.version"),
            image_path=_text(data, "image.path"),
            image_sha256=_text(data, "image.sha256"),
            image_sha512=_text(data, "image.sha512"),
            profile_id=_text(data, "profile.id"),
            profile_version=_text(data, "profile.version"),
            profile_digest=_text(data, "profile.digest"),
            started=_text(data, "started"),
            finished=_text(data, "finished"),
            accelerator=_text(data, "accelerator"),
            goldsmith_version=_text(data, "goldsmith_version"),
            timings=_read_timings(data),
            results=_read_results(data),
            packages=tuple(packages),
        )

    def write(self, path: Path) -> None:
        """validation.json, whole or not at all, readable by everyone (PUBLISHED_MODE)."""
        write_atomically(path, json.dumps(self.to_dict(), indent=2) + "\n", mode=PUBLISHED_MODE)

    @classmethod
    def load(cls, path: Path) -> ValidationRun:
        """Read under the strict rules (regular file, no duplicate keys, ...);
        OSError, DataError or RecordError (both ValueErrors) when it cannot be."""
        return cls.from_dict(load_json_file(path))


# validation.json, junit.xml and the HTML reports are evidence to publish, not
# secrets: a web server (another user) must be able to serve them. A umask of 077
# would make them 0600, so the mode is set on the file itself, which no umask touches.
PUBLISHED_MODE = 0o644
