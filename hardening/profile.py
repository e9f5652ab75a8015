"""Hardening profiles: which controls, with which parameters, and which waivers.

A profile may ``extends`` another (a shipped name or a file path relative to
it). Resolution is parent first, then the child's additions, removals,
parameters and waivers. Selection keeps catalog order so a profile's digest
does not depend on how its YAML happens to be ordered.

Its ``controls`` list may also define controls of its own (hardening.custom),
which it selects; they follow the shipped catalog, parent's first, and whoever
extends the profile inherits them like any other selection.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from hardening.benchmarks import benchmark_for_release, known_releases
from hardening.catalog import Catalog, load_catalog, loads_document
from hardening.control import Control
from hardening.control_reader import ID, validate_params
from hardening.custom import define_controls
from hardening.errors import ParamError, ProfileError, suggest
from hardening.strictdata import DataError, read_regular

PROFILE_KEYS = frozenset(
    {
        "id",
        "version",
        "title",
        "description",
        "extends",
        "select",
        "controls",
        "exclude",
        "parameters",
        "waivers",
    }
)
SELECT_KEYS = frozenset({"cis_level", "area", "all"})
# A profile's id and version name artifacts and reach the apply script's
# header: plain words only.
VERSION = r"[0-9]+(\.[0-9]+)*([-+~][0-9A-Za-z]+([.+~-][0-9A-Za-z]+)*)?"
_IDENTITY = {
    "id": (ID, "a lower-case id like web-server ([a-z0-9] words joined by -)"),
    "version": (VERSION, "a version like 1.2.3 (digits and dots, then -rc1 or +local)"),
}
WAIVER_KEYS = frozenset({"control", "reason", "expires"})


@dataclasses.dataclass(frozen=True)
class Waiver:
    control: str
    reason: str
    expires: date | None = None

    def active(self, today: date | None = None) -> bool:
        return self.expires is None or (today or date.today()) <= self.expires


@dataclasses.dataclass(frozen=True)
class SelectedControl:
    control: Control
    params: Mapping[str, Any]  # mechanism parameters with the profile's values filled in
    waiver: Waiver | None
    # Debian releases ("12") where it does not apply, and why: the control
    # names other releases, or the profile selects it by a CIS level that
    # release's benchmark does not give it. Applied and checked elsewhere
    # (a release no benchmark is written for included); reported not
    # applicable there.
    not_on: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.control.id


@dataclasses.dataclass(frozen=True)
class Profile:
    id: str
    version: str
    title: str
    digest: str  # "sha256:<hex>" over the canonical JSON of the resolved profile
    source: Path
    controls: tuple[SelectedControl, ...]
    parameters: Mapping[str, Any]  # every tunable the selected controls read, resolved

    def canonical(self) -> dict[str, Any]:
        return canonical(self.id, self.version, self.title, self.controls, self.parameters)


def canonical(
    ident: str,
    version: str,
    title: str,
    controls: tuple[SelectedControl, ...],
    parameters: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "id": ident,
        "version": version,
        "title": title,
        "parameters": dict(sorted(parameters.items())),
        "controls": [
            {
                **({"definition": definition(sc.control)} if sc.control.custom else {}),
                "id": sc.control.id,
                "title": sc.control.title,
                "area": sc.control.area,
                "severity": str(sc.control.severity),
                "references": list(sc.control.references.strings()),
                "mechanism": sc.control.mechanism,
                "params": sc.params,
                **({"needs": list(sc.control.needs)} if sc.control.needs else {}),
                **({"phase": sc.control.phase} if sc.control.phase is not None else {}),
                **({"not_on": dict(sorted(sc.not_on.items()))} if sc.not_on else {}),
                "waiver": None
                if sc.waiver is None
                else {
                    "reason": sc.waiver.reason,
                    "expires": sc.waiver.expires.isoformat() if sc.waiver.expires else None,
                },
            }
            for sc in controls
        ],
    }


def definition(control: Control) -> dict[str, Any]:
    """What a profile's own control says beyond what every selected control
    records: shipped controls change only with goldsmith's version (part of a
    build key), a profile's own with the profile, so the digest carries all of
    it. The code files by their bytes' digest; paths relative to the profile,
    so the digest does not depend on where the profile is checked out."""
    condition = control.only_if
    return {
        "rationale": control.rationale,
        "only_if": None
        if condition is None
        else {k: v for k, v in dataclasses.asdict(condition).items() if v},
        "parameters": {
            name: {
                "type": str(spec.type),
                "default": spec.default,
                **({"min": spec.minimum} if spec.minimum is not None else {}),
                **({"max": spec.maximum} if spec.maximum is not None else {}),
            }
            for name, spec in sorted(control.parameter_types.items())
        },
        "files": [{"param": f.key, "path": f.path, "sha256": f.sha256} for f in control.files],
    }


def _profiles_dir() -> Path:
    return Path(str(resources.files("hardening") / "data" / "profiles"))


def list_profiles() -> list[str]:
    return sorted(p.stem for p in _profiles_dir().glob("*.yaml"))


def _locate(ref: str | Path, relative_to: Path | None = None) -> Path:
    text = str(ref)
    looks_like_path = isinstance(ref, Path) or "/" in text or text.endswith((".yaml", ".yml"))
    if looks_like_path:
        path = Path(text)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        # os.path: a name too long for the file system is no file, not an OSError.
        if not os.path.isfile(path):
            raise ProfileError(path, None, "no such profile file")
        return path
    shipped = _profiles_dir() / f"{text}.yaml"
    if not os.path.isfile(shipped):
        names = list_profiles()
        raise ProfileError(
            text, None, "no such profile; shipped: " + ", ".join(names) + suggest(text, names)
        )
    return shipped


@dataclasses.dataclass
class _Draft:
    catalog: Catalog  # the shipped controls, then those the profiles define
    ident: str = ""
    version: str = ""
    title: str = ""
    selected: set[str] = dataclasses.field(default_factory=set)
    # Controls selected only by CIS level: the releases on which a level
    # selector chose each (absent: selected outright, on every release).
    by_level: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    waivers: dict[str, Waiver] = dataclasses.field(default_factory=dict)
    parameter_origin: dict[str, Path] = dataclasses.field(default_factory=dict)
    level: int = 0  # the highest CIS level a selector asked for


def _read(path: Path) -> Mapping[str, Any]:
    try:
        raw = read_regular(path)
    except OSError as exc:
        raise ProfileError(path, None, f"readable ({exc.strerror})") from None
    except DataError as exc:  # not a regular file, or too large
        raise ProfileError(path, None, str(exc)) from None
    data = loads_document(path, raw)
    if not isinstance(data, Mapping):
        raise ProfileError(path, None, "a mapping with id, version, title and controls")
    for key in data:
        if key not in PROFILE_KEYS:
            raise ProfileError(path, str(key), "unknown key" + suggest(str(key), PROFILE_KEYS))
    return data


def _ids(data: Mapping[str, Any], key: str, path: Path, catalog: Catalog) -> list[str]:
    """The ids a list names; in ``controls``, definitions (mappings) are
    skipped: hardening.custom reads them."""
    value = data.get(key, []) or []
    definitions = key == "controls"
    if not isinstance(value, list):
        raise ProfileError(
            path,
            key,
            "a list of control ids and definitions" if definitions else "a list of control ids",
        )
    out = []
    for index, ident in enumerate(value):
        if definitions and isinstance(ident, Mapping):
            continue
        if not isinstance(ident, str) or ident not in catalog:
            raise ProfileError(
                path,
                f"{key}[{index}]",
                "a control id from the catalog (or defined by this profile or its parents)"
                + suggest(str(ident), catalog),
            )
        out.append(ident)
    return out


def _select(
    data: Mapping[str, Any], path: Path, catalog: Catalog
) -> tuple[set[str], dict[str, set[str]]]:
    """The controls the selectors choose outright, and those a CIS level
    selector chooses with the releases it chooses them on: on each release,
    by the level that release's benchmark gives the control."""
    value = data.get("select", []) or []
    if not isinstance(value, list):
        raise ProfileError(path, "select", "a list of selectors like {cis_level: 1}")
    chosen: set[str] = set()
    by_level: dict[str, set[str]] = {}
    releases = known_releases()
    for index, selector in enumerate(value):
        field = f"select[{index}]"
        if not isinstance(selector, Mapping) or len(selector) != 1:
            raise ProfileError(path, field, "one of {cis_level: 1|2}, {area: <area>}, {all: true}")
        key, arg = next(iter(selector.items()))
        if key not in SELECT_KEYS:
            raise ProfileError(
                path, f"{field}.{key}", "unknown selector" + suggest(str(key), SELECT_KEYS)
            )
        if key == "cis_level" and (isinstance(arg, bool) or arg not in (1, 2)):
            raise ProfileError(path, f"{field}.cis_level", "1 or 2")
        areas = {c.area for c in catalog.values()}
        if key == "area" and (not isinstance(arg, str) or arg not in areas):
            raise ProfileError(path, f"{field}.area", "a catalog area" + suggest(str(arg), areas))
        if key == "all" and not isinstance(arg, bool):
            raise ProfileError(path, f"{field}.all", "true or false")
        for control in catalog.values():
            if key == "cis_level":
                levels = {r: control.references.level_on(r) for r in releases}
                on = {r for r, level in levels.items() if level is not None and level <= arg}
                if on:
                    by_level.setdefault(control.id, set()).update(on)
                continue
            if control.area == arg if key == "area" else arg is True:
                chosen.add(control.id)
    return chosen, by_level


def _not_on(control: Control, by_level: set[str] | None, level: int) -> dict[str, str]:
    """Where a selected control does not apply, and why."""
    out: dict[str, str] = {}
    for release in known_releases():
        if control.releases and release not in control.releases:
            out[release] = control.releases_reason
        elif by_level is not None and release not in by_level:
            benchmark = benchmark_for_release(release)
            name = benchmark.name if benchmark else f"Debian {release}"
            out[release] = (
                f"{name} has it at level {control.references.level_on(release)}; "
                f"this profile selects level {level}"
            )
    return out


def _waivers(data: Mapping[str, Any], path: Path, catalog: Catalog) -> dict[str, Waiver]:
    value = data.get("waivers", []) or []
    if not isinstance(value, list):
        raise ProfileError(path, "waivers", "a list of {control, reason, expires}")
    out: dict[str, Waiver] = {}
    for index, item in enumerate(value):
        field = f"waivers[{index}]"
        if not isinstance(item, Mapping):
            raise ProfileError(path, field, "a mapping with control and reason")
        for key in item:
            if key not in WAIVER_KEYS:
                raise ProfileError(
                    path, f"{field}.{key}", "unknown key" + suggest(str(key), WAIVER_KEYS)
                )
        ident = item.get("control")
        if not isinstance(ident, str) or ident not in catalog:
            raise ProfileError(
                path, f"{field}.control", "a control id" + suggest(str(ident), catalog)
            )
        reason = item.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ProfileError(path, f"{field}.reason", "a non-empty reason")
        expires = item.get("expires")
        if expires is not None and (not isinstance(expires, date) or hasattr(expires, "hour")):
            raise ProfileError(path, f"{field}.expires", "a date like 2026-12-31")
        out[ident] = Waiver(ident, " ".join(reason.split()), expires)
    return out


def _parameters(data: Mapping[str, Any], path: Path, catalog: Catalog) -> dict[str, Any]:
    """The profile's values, each checked against the type its controls
    declare and in its normal form."""
    value = data.get("parameters", {}) or {}
    if not isinstance(value, Mapping):
        raise ProfileError(path, "parameters", "a mapping of parameter names to values")
    types = catalog.parameter_types()
    out: dict[str, Any] = {}
    for key, given in value.items():
        spec = types.get(key) if isinstance(key, str) else None
        if spec is None:
            raise ProfileError(
                path, f"parameters.{key}", "unknown parameter" + suggest(str(key), types)
            )
        try:
            out[key] = spec.check(given)
        except ParamError as exc:
            raise ProfileError(path, f"parameters.{key}", exc.expected) from None
    return out


def _apply(path: Path, draft: _Draft, seen: tuple[Path, ...]) -> None:
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ProfileError(path, "extends", f"no cycle ({chain})")
    data = _read(path)
    parent = data.get("extends")
    if parent is not None:
        if not isinstance(parent, str) or not parent:
            raise ProfileError(path, "extends", "a shipped profile name or a path")
        try:
            parent_path = _locate(parent, path.parent)
        except ProfileError as exc:
            raise ProfileError(path, "extends", exc.expected) from None
        _apply(parent_path, draft, (*seen, path.resolve()))
    for key, (pattern, expected) in _IDENTITY.items():
        value = data.get(key)
        if value is None and parent is None:
            raise ProfileError(path, key, "required")
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, str | int | float)
            or len(str(value)) > 64
            or not re.fullmatch(pattern, str(value))
        ):
            raise ProfileError(path, key, expected)
    draft.ident = str(data.get("id", draft.ident))
    draft.version = str(data.get("version", draft.version))
    title = data.get("title")
    if title is not None and not isinstance(title, str):
        raise ProfileError(path, "title", "a string")
    if not isinstance(data.get("description", ""), str):
        raise ProfileError(path, "description", "a string")
    draft.title = title or draft.title or draft.ident
    listed = data.get("controls", []) or []
    defined: list[str] = []
    if isinstance(listed, list):
        draft.catalog, defined = define_controls(listed, path, draft.catalog)
    catalog = draft.catalog
    outright, by_level = _select(data, path, catalog)
    outright |= set(defined) | set(_ids(data, "controls", path, catalog))
    excluded = set(_ids(data, "exclude", path, catalog))
    for ident, releases in by_level.items():
        if ident in draft.selected and ident not in draft.by_level:
            continue  # a parent selected it outright: on every release
        draft.by_level.setdefault(ident, set()).update(releases)
    for ident in outright | excluded:
        draft.by_level.pop(ident, None)
    draft.selected |= outright | set(by_level)
    draft.selected -= excluded
    levels = [int(s["cis_level"]) for s in data.get("select", []) or [] if "cis_level" in s]
    draft.level = max([draft.level, *levels])
    for key, value in _parameters(data, path, catalog).items():
        draft.parameters[key] = value
        draft.parameter_origin[key] = path
    for ident, waiver in _waivers(data, path, catalog).items():
        if ident not in draft.selected:
            raise ProfileError(
                path, "waivers", f"{ident} is waived but not selected by this profile"
            )
        draft.waivers[ident] = waiver


def load_profile(ref: str | Path) -> Profile:
    """A shipped profile by name, or a profile file by path, fully resolved."""
    path = _locate(ref)
    draft = _Draft(load_catalog())
    _apply(path, draft, ())
    catalog = draft.catalog
    if not draft.selected:
        raise ProfileError(path, "controls", "at least one control")
    selected: list[SelectedControl] = []
    used: dict[str, Any] = {}
    for ident, control in catalog.items():
        if ident not in draft.selected:
            continue
        values = {
            k: draft.parameters.get(k, spec.default) for k, spec in control.parameter_types.items()
        }
        origin = next(
            (draft.parameter_origin[k] for k in control.parameters if k in draft.parameter_origin),
            path,
        )
        validate_params(control, values, str(origin), f"parameters (for {ident})")
        used.update(values)
        selected.append(
            SelectedControl(
                control,
                control.resolve_params(values),
                draft.waivers.get(ident),
                _not_on(control, draft.by_level.get(ident), draft.level),
            )
        )
    controls = tuple(selected)
    document = canonical(draft.ident, draft.version, draft.title, controls, used)
    blob = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()
    return Profile(
        id=draft.ident,
        version=draft.version,
        title=draft.title,
        digest=digest,
        source=path,
        controls=controls,
        parameters=dict(sorted(used.items())),
    )
