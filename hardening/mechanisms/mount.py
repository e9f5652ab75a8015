"""Mount points and their options, live (findmnt) and persisted (/etc/fstab).

Separate partitions cannot be created in a running guest: for those the apply
side only tightens options of an existing fstab entry, and shipped profiles
waive the control when the image has no such partition. tmpfs mounts (/tmp,
/dev/shm) are created when missing."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from hardening.errors import FactsError, ParamError
from hardening.facts import SAFE_PATH, Facts, Probe, probe_file
from hardening.mechanisms.base import Mechanism, Outcome, error, get_str
from hardening.results import Status
from hardening.shell import q

FINDMNT = Probe("findmnt", "findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS", isolated=False)
FSTAB = probe_file("/etc/fstab")
OPTION = r"[a-z0-9_=.%-]+"


@dataclasses.dataclass(frozen=True)
class MountSpec:
    target: str
    options: tuple[str, ...]
    source: str  # create the fstab entry from these when missing ("" = never create)
    fstype: str
    base_options: str


def _unescape(text: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})|\\0([0-7]{2})", _char, text)


def _char(match: re.Match[str]) -> str:
    if match.group(1):
        return chr(int(match.group(1), 16))
    return chr(int(match.group(2), 8))


def live_mounts(text: str) -> dict[str, set[str]]:
    """target -> options of the last (topmost) mount on it."""
    mounts: dict[str, set[str]] = {}
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) >= 4:
            mounts[_unescape(fields[0])] = set(fields[3].split(","))
    return mounts


def fstab_entries(text: str) -> dict[str, set[str]]:
    entries: dict[str, set[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and not fields[0].startswith("#"):
            entries[_unescape(fields[1].replace("\\040", " "))] = set(fields[3].split(","))
    return entries


class Mount(Mechanism[MountSpec]):
    name = "mount"
    phase = 30
    keys = frozenset({"target", "options", "source", "fstype", "base_options"})
    required = frozenset({"target"})

    def build(self, params: Mapping[str, Any]) -> MountSpec:
        target = get_str(params, "target")
        if not SAFE_PATH.match(target):
            raise ParamError("target", "an absolute path")
        options = params.get("options", [])
        if not isinstance(options, list) or not all(
            isinstance(o, str) and re.fullmatch(OPTION, o) for o in options
        ):
            raise ParamError("options", "a list of mount options like nodev")
        source = str(params.get("source", ""))
        fstype = str(params.get("fstype", ""))
        base = str(params.get("base_options", "defaults"))
        for key, value in (("source", source), ("fstype", fstype), ("base_options", base)):
            if value and not re.fullmatch(r"[A-Za-z0-9_=.,%/:-]+", value):
                raise ParamError(key, "plain characters")
        if source and not fstype:
            raise ParamError("fstype", "required with source")
        return MountSpec(target, tuple(options), source, fstype, base)

    def render(self, spec: MountSpec) -> str:
        args = [q(spec.target), q(",".join(spec.options))]
        if spec.source:
            args += [q(spec.source), q(spec.fstype), q(spec.base_options)]
        return "gs_fstab " + " ".join(args)

    def probes(self, spec: MountSpec) -> list[Probe]:
        return [FINDMNT, FSTAB]

    def evaluate(self, spec: MountSpec, facts: Facts) -> Outcome:
        wanted = ",".join(spec.options)
        expected = f"{spec.target} a separate mount" + (f" with {wanted}" if wanted else "")
        expected += " (live and in /etc/fstab)"
        try:
            live = live_mounts(facts.text(FINDMNT.name))
            fstab_section = facts.get(FSTAB.name)
        except FactsError as exc:
            return error(expected, str(exc))
        if not live:
            return error(expected, "findmnt printed nothing")
        persisted = fstab_entries(fstab_section.text) if fstab_section.rc == 0 else {}
        now = live.get(spec.target)
        saved = persisted.get(spec.target)
        if now is None:
            return Outcome(Status.failed, expected, f"{spec.target} is not a separate mount")
        missing_live = [o for o in spec.options if o not in now]
        observed = "live: " + (
            "all options" if not missing_live else "missing " + ",".join(missing_live)
        )
        if saved is None:
            observed += "; /etc/fstab: no entry"
            ok = False
        else:
            missing_saved = [o for o in spec.options if o not in saved]
            observed += "; /etc/fstab: " + (
                "all options" if not missing_saved else "missing " + ",".join(missing_saved)
            )
            ok = not missing_saved
        ok = ok and not missing_live
        return Outcome(Status.passed if ok else Status.failed, expected, observed)
