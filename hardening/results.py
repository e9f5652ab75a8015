"""The outcome of checking one control (or one hygiene or user check)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


class Status(enum.StrEnum):
    passed = "passed"
    failed = "failed"
    error = "error"  # the check itself could not run or its evidence was unreadable
    waived = "waived"  # a profile waiver with a reason; the evidence is still recorded
    skipped = "skipped"  # not applicable here, with a reason


@dataclasses.dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    area: str  # "ssh", "sysctl", ... for controls; "hygiene"; "user"
    status: Status
    expected: str
    observed: str
    severity: str = "medium"  # low | medium | high
    reason: str = ""  # why waived or skipped
    references: tuple[str, ...] = ()  # e.g. "CIS Debian 12 v1.1.0 5.1.20", "dev-sec ssh-07"
    duration: float = 0.0  # seconds spent evaluating (evidence gathering excluded)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = str(self.status)
        data["references"] = list(self.references)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            id=str(data["id"]),
            title=str(data["title"]),
            area=str(data["area"]),
            status=Status(data["status"]),
            expected=str(data["expected"]),
            observed=str(data["observed"]),
            severity=str(data.get("severity", "medium")),
            reason=str(data.get("reason", "")),
            references=tuple(str(r) for r in data.get("references", ())),
            duration=float(data.get("duration", 0.0)),
        )
