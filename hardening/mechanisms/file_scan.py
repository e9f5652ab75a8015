"""File-system wide findings: world-writable files and non-sticky world-writable
directories, files without a known owner or group, set-uid/set-gid programs.

Every control of this kind reads the same evidence: one traversal of the local
file systems whose find expression prints a tagged line per finding, one
branch per kind (GNU find evaluates every branch joined with ``,``). Walking the
tree once instead of once per control is what keeps the check fast on a slow
guest."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from hardening.errors import FactsError, ParamError
from hardening.facts import SAFE_PATH, Facts, Probe
from hardening.mechanisms.base import Mechanism, Outcome, error, get_bool
from hardening.results import Status

PRUNE = r"\( -path /proc -o -path /sys -o -path /run -o -path /dev \) -prune"


class Finding(enum.StrEnum):
    world_writable = "world_writable"
    unowned = "unowned"
    suid_sgid = "suid_sgid"


# The tag each branch prints, and the branch itself.
_BRANCHES = {
    "ww": r"\( -type f -perm -0002 -printf 'ww %p\n' \)",
    "wd": r"\( -type d -perm -0002 ! -perm -1000 -printf 'wd %p\n' \)",
    # Known IDs from /etc/passwd and /etc/group (read by the shell, below):
    # find's -nouser/-nogroup ask NSS for every file, four times slower.
    "uo": r'\( \( ! \( -false "${GS_UIDS[@]}" \) -o ! \( -false "${GS_GIDS[@]}" \) \) '
    r"-printf 'uo %p\n' \)",
    "sx": r"\( -type f -perm /6000 -printf 'sx %p\n' \)",
}
_TAGS = {
    Finding.world_writable: ("ww", "wd"),
    Finding.unowned: ("uo",),
    Finding.suid_sgid: ("sx",),
}
_KNOWN_IDS = (
    'GS_UIDS=(); while IFS=: read -r _ _ id _; do GS_UIDS+=(-o -uid "$id"); done </etc/passwd; '
    'GS_GIDS=(); while IFS=: read -r _ _ id _; do GS_GIDS+=(-o -gid "$id"); done </etc/group; '
)
SCAN = Probe(
    "file-scan",
    _KNOWN_IDS
    + f"find / -xdev {PRUNE} -o \\( {' , '.join(_BRANCHES.values())} \\) 2>/dev/null; true",
    isolated=False,
)


@dataclasses.dataclass(frozen=True)
class ScanSpec:
    find: Finding
    allowed: frozenset[str]
    fix: bool


def findings(text: str, tags: tuple[str, ...]) -> list[str]:
    """Paths the scan tagged with one of ``tags``, in the order found."""
    out = []
    for line in text.splitlines():
        tag, _, path = line.partition(" ")
        if tag in tags and path:
            out.append(path)
    return out


class FileScan(Mechanism[ScanSpec]):
    name = "file_scan"
    phase = 85
    keys = frozenset({"find", "allowed", "fix"})
    required = frozenset({"find"})

    def build(self, params: Mapping[str, Any]) -> ScanSpec:
        try:
            find = Finding(str(params.get("find")))
        except ValueError:
            raise ParamError("find", "world_writable, unowned or suid_sgid") from None
        allowed = params.get("allowed", [])
        if isinstance(allowed, str):
            allowed = [a for a in allowed.split(",") if a]
        if not isinstance(allowed, list) or not all(
            isinstance(a, str) and SAFE_PATH.match(a) for a in allowed
        ):
            raise ParamError("allowed", "a list of absolute paths")
        fix = get_bool(params, "fix", False)
        if fix and find is not Finding.world_writable:
            raise ParamError("fix", "only for find: world_writable")
        return ScanSpec(find, frozenset(allowed), fix)

    def render(self, spec: ScanSpec) -> str:
        if not spec.fix:
            return ""
        # Files lose o+w, directories gain the sticky bit: both in one walk.
        return (
            f"find / -xdev {PRUNE} -o "
            r"\( \( -type f -perm -0002 -print -exec chmod o-w {} + \) , "
            r"\( -type d -perm -0002 ! -perm -1000 -print -exec chmod +t {} + \) \)"
            ' >"$GS_TMP/ww" || gs_note "find met errors (files vanishing while it ran)"\n'
            'if [ -s "$GS_TMP/ww" ]; then gs_changed; fi'
        )

    def probes(self, spec: ScanSpec) -> list[Probe]:
        return [SCAN]

    def evaluate(self, spec: ScanSpec, facts: Facts) -> Outcome:
        if spec.find is Finding.world_writable:
            expected = "no world-writable file and no world-writable directory without sticky bit"
        elif spec.find is Finding.unowned:
            expected = "no file without a known owner or group"
        else:
            expected = f"set-uid/set-gid files among the {len(spec.allowed)} allowed"
        expected += " (local file systems)"
        try:
            section = facts.get(SCAN.name)
        except FactsError as exc:
            return error(expected, str(exc))
        found = [p for p in findings(section.text, _TAGS[spec.find]) if p not in spec.allowed]
        if not found:
            return Outcome(Status.passed, expected, "none found")
        shown = " | ".join(sorted(found)[:3])
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        return Outcome(Status.failed, expected, f"{len(found)} found: {shown}{more}")
