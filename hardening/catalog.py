"""The control catalog: YAML data under hardening/data/controls, one file per
area, parsed once into frozen Control records.

A control's mechanism parameters may name tunables as ``${name}``; the control
declares each tunable under ``parameters`` with its type and default
(``su_group: {type: name, default: sugroup}``, types in
hardening.mechanisms.parameters) and a profile may override it with a value of
that type.

Resolving a control is the one place values meet mechanism parameters
(:meth:`Control.resolve_params`): keys holding bash (a mechanism's
``code_keys``) keep their ``${name}`` as a shell expansion and get the values as
variables; every other key gets the checked values in place. Loading refuses
bash in which a declared parameter is expanded outside double quotes.

A profile may define controls of its own (hardening.custom): the same fields,
parsed here with ``custom=True``, under an id ``<namespace>.<id>`` that no
shipped id (which never holds a dot) can equal.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from hardening.benchmarks import NUMBER, known_releases, load_benchmarks
from hardening.errors import ParamError, ProfileError, suggest
from hardening.mechanisms import MECHANISMS
from hardening.mechanisms.parameters import (
    NAME,
    VARIABLES,
    ParamSpec,
    as_text,
    parse_declaration,
)
from hardening.mechanisms.quoting import QuotingError, unquoted_expansions
from hardening.strictdata import DataError, loads_yaml, read_regular

ID = r"[a-z0-9]+(-[a-z0-9]+)*"
# A profile's own controls: <namespace>.<id>. The dot keeps them apart from
# shipped ids for good, whatever goldsmith ships later.
NAMESPACE = r"[a-z][a-z0-9-]*"
CUSTOM_ID = rf"{NAMESPACE}\.{ID}"
RESERVED_NAMESPACES = frozenset({"goldsmith"})
MAX_ID = 100
# Free-form references of a profile's own controls: {acme: [WEB-7]}.
REFERENCE_SOURCE = r"[A-Za-z][A-Za-z0-9_.-]{0,39}"
REFERENCE_ITEM = r"[A-Za-z0-9][A-Za-z0-9_.:/#()-]{0,63}"
# ANSSI's "Configuration recommendations of a GNU/Linux system" numbers its
# recommendations R1 to R80.
ANSSI_NAME = "ANSSI BP-028 v2.0"
ANSSI_ITEM = r"R([1-9]|[1-7][0-9]|80)"
_REF = re.compile(r"\$\{(" + NAME + r")\}")


class Severity(enum.StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


@dataclasses.dataclass(frozen=True)
class CisReference:
    """What a control satisfies in one CIS benchmark (hardening.benchmarks)."""

    benchmark: str  # its key: debian12, debian13
    items: tuple[str, ...]  # recommendation numbers
    level: int  # the Server profile level (1 or 2) that asks for the control there

    def name(self) -> str:
        return load_benchmarks()[self.benchmark].name

    def release(self) -> str:
        return load_benchmarks()[self.benchmark].release


@dataclasses.dataclass(frozen=True)
class References:
    cis: tuple[CisReference, ...] = ()  # one per benchmark, in benchmark order
    devsec: tuple[str, ...] = ()  # dev-sec linux-baseline / ssh-baseline control ids
    # ANSSI BP-028 v2.0 recommendations it satisfies ("R12"), whatever their level.
    anssi: tuple[str, ...] = ()
    no_reference_reason: str = ""
    # Any other standard, by name: (("acme", ("WEB-7",)),), shown "acme WEB-7".
    other: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def cis_level(self) -> int | None:
        """The lowest level any benchmark asks for the control at (None without CIS)."""
        return min((ref.level for ref in self.cis), default=None)

    def cis_on(self, benchmark: str) -> CisReference | None:
        return next((ref for ref in self.cis if ref.benchmark == benchmark), None)

    def level_on(self, release: str) -> int | None:
        """The CIS level that asks for the control on ``release``: its level in
        that release's benchmark; where that benchmark has no item for it, its
        lowest level elsewhere (goldsmith keeps a release's hardening alike
        where one benchmark is silent, as CIS Debian 13 is about nftables)."""
        for ref in self.cis:
            if ref.release() == release:
                return ref.level
        return self.cis_level

    def strings(self, release: str | None = None) -> tuple[str, ...]:
        """Every reference as text ("CIS Debian 12 v1.1.0 5.1.20 (L1)"); with
        ``release``, CIS items of that release's benchmark only (all of them
        for a release no benchmark is written for)."""
        refs = self.cis
        if release is not None and release in known_releases():
            refs = tuple(ref for ref in refs if ref.release() == release)
        out = [f"{ref.name()} {number} (L{ref.level})" for ref in refs for number in ref.items]
        out += [f"dev-sec {ident}" for ident in self.devsec]
        out += [f"{ANSSI_NAME} {ident}" for ident in self.anssi]
        out += [f"{source} {ident}" for source, idents in self.other for ident in idents]
        return tuple(out)


@dataclasses.dataclass(frozen=True)
class Condition:
    """When a control applies: a package is installed, or a parameter is non-empty."""

    installed: str = ""
    param_set: str = ""

    def describe(self) -> str:
        if self.installed:
            return f"package {self.installed} is not installed"
        return f"parameter {self.param_set} is not set"


@dataclasses.dataclass(frozen=True)
class CodeFile:
    """A file beside a profile holding one of its control's code keys."""

    key: str  # the mechanism parameter it fills: apply or check
    path: str  # relative to the profile's folder, as the profile names it
    sha256: str  # of its bytes


@dataclasses.dataclass(frozen=True)
class Control:
    id: str
    title: str
    area: str
    rationale: str
    severity: Severity
    references: References
    mechanism: str
    params: Mapping[str, Any]  # mechanism parameters, ${name} references unresolved
    parameter_types: Mapping[str, ParamSpec]  # tunables this control reads, typed
    only_if: Condition | None = None
    source: str = ""  # the catalog file it came from
    # Packages the control's apply and check rely on (cron for cron.service);
    # the apply script installs them before any control runs.
    needs: tuple[str, ...] = ()
    # When it is applied, overriding its mechanism's phase (0-99); from
    # hardening.apply.AFTER_RELOADS on, after sysctl, grub, sshd ... reloads.
    phase: int | None = None
    # Code keys read from files beside the profile (a profile's own controls).
    files: tuple[CodeFile, ...] = ()
    # The Debian releases ("12", "13") it applies to, and why only those; none:
    # every release. Elsewhere it is reported not applicable, never dropped.
    releases: tuple[str, ...] = ()
    releases_reason: str = ""

    @property
    def custom(self) -> bool:
        """Defined by a profile rather than shipped."""
        return "." in self.id

    @property
    def parameters(self) -> Mapping[str, Any]:
        """Each tunable's default."""
        return {name: spec.default for name, spec in self.parameter_types.items()}

    def resolve_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The mechanism parameters for ``values`` (defaults where missing).

        Every value is checked against its declared type here, whoever
        produced it. Keys holding bash keep their ``${name}`` references, and
        the values they read travel under VARIABLES, to be assigned as quoted
        shell variables; in every other key each ${name} is replaced.
        """
        merged: dict[str, Any] = {}
        for name, spec in self.parameter_types.items():
            try:
                merged[name] = spec.check(values.get(name, spec.default))
            except ParamError as exc:
                raise ParamError(f"{VARIABLES}.{name}", exc.expected) from None
        code_keys = MECHANISMS[self.mechanism].code_keys
        resolved: dict[str, Any] = {}
        code = []
        for key, value in self.params.items():
            if key in code_keys:
                resolved[key] = value
                code.append(value)
            else:
                resolved[key] = substitute(value, merged)
        if code_keys:
            # Any expansion counts: "${name}" and also ${name//,/ } or $name.
            resolved[VARIABLES] = {
                name: value
                for name, value in sorted(merged.items())
                if any(re.search(rf"\$\{{?{name}\b", str(text)) for text in code)
            }
        return resolved


def substitute(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:
            return values[whole.group(1)]

        def text(match: re.Match[str]) -> str:
            return as_text(values[match.group(1)])

        return _REF.sub(text, value)
    if isinstance(value, Mapping):
        return {k: substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    return value


def references_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_REF.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(references_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(references_in(v) for v in value)) if value else set()
    return set()


class Catalog(Mapping[str, Control]):
    """Controls by id, in catalog order (file name, then position)."""

    def __init__(self, controls: Mapping[str, Control]) -> None:
        self._controls = dict(controls)

    def __getitem__(self, key: str) -> Control:
        return self._controls[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._controls)

    def __len__(self) -> int:
        return len(self._controls)

    def parameter_types(self) -> dict[str, ParamSpec]:
        """Every tunable any control reads (one declaration per name: the
        catalog refuses two that differ)."""
        types: dict[str, ParamSpec] = {}
        for control in self._controls.values():
            types.update(control.parameter_types)
        return types


CONTROL_KEYS = frozenset(
    {
        "id",
        "title",
        "area",
        "rationale",
        "severity",
        "cis",
        "cis_level",
        "releases",
        "releases_reason",
        "devsec",
        "anssi",
        "no_reference_reason",
        "references",
        "mechanism",
        "params",
        "parameters",
        "only_if",
        "needs",
        "phase",
    }
)
PACKAGE = r"[a-z0-9][a-z0-9+.-]+"


def _text(data: Mapping[str, Any], key: str, path: str, field: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ProfileError(path, f"{field}.{key}", "a non-empty string")
    return " ".join(value.split())


def _str_list(data: Mapping[str, Any], key: str, path: str, field: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProfileError(path, f"{field}.{key}", "a list of strings")
    return tuple(value)


def check_custom_id(ident: Any, path: str, field: str) -> str:
    """A profile's own control id, ``<namespace>.<id>``."""
    shape = "<namespace>.<id> like acme.nginx-server-tokens (namespace [a-z][a-z0-9-]*)"
    if not isinstance(ident, str) or len(ident) > MAX_ID:
        raise ProfileError(path, field, shape)
    if re.fullmatch(ID, ident):
        raise ProfileError(
            path, field, f"{shape}: ids without a namespace are goldsmith's own, not {ident}"
        )
    if not re.fullmatch(CUSTOM_ID, ident):
        raise ProfileError(path, field, shape)
    namespace = ident.split(".", 1)[0]
    if namespace in RESERVED_NAMESPACES:
        raise ProfileError(path, field, f"{shape}: the namespace {namespace} is reserved")
    return ident


def parse_control(
    data: Any,
    path: str,
    field: str,
    *,
    custom: bool = False,
    files: Sequence[CodeFile] = (),
) -> Control:
    """One control from its mapping. ``custom``: a profile's own, named
    ``<namespace>.<id>``; ``files``: which code keys came from which file
    (their text is already in ``params``)."""
    if not isinstance(data, Mapping):
        raise ProfileError(path, field, "a mapping describing one control")
    for key in data:
        if key not in CONTROL_KEYS:
            raise ProfileError(
                path, f"{field}.{key}", "unknown key" + suggest(str(key), CONTROL_KEYS)
            )
    ident = data.get("id")
    if custom:
        ident = check_custom_id(ident, path, f"{field}.id")
    elif not isinstance(ident, str) or not re.fullmatch(ID, ident):
        raise ProfileError(path, f"{field}.id", "a lower-case id like ssh-root-login")
    field = f"{field}({ident})"
    try:
        severity = Severity(data.get("severity", "medium"))
    except ValueError:
        raise ProfileError(path, f"{field}.severity", "low, medium or high") from None
    refs = References(
        cis=_cis_references(data, path, field),
        devsec=_str_list(data, "devsec", path, field),
        anssi=_anssi_references(data, path, field),
        no_reference_reason=str(data.get("no_reference_reason", "") or ""),
        other=_other_references(data, path, field),
    )
    if (
        not (refs.cis or refs.devsec or refs.anssi or refs.other)
        and not refs.no_reference_reason.strip()
    ):
        raise ProfileError(
            path,
            f"{field}.no_reference_reason",
            "a reason, since there is no cis, devsec, anssi or other reference",
        )
    mechanism_name = data.get("mechanism")
    if not isinstance(mechanism_name, str) or mechanism_name not in MECHANISMS:
        raise ProfileError(
            path,
            f"{field}.mechanism",
            "one of " + ", ".join(sorted(MECHANISMS)) + suggest(str(mechanism_name), MECHANISMS),
        )
    params = data.get("params", {})
    if not isinstance(params, Mapping):
        raise ProfileError(path, f"{field}.params", "a mapping")
    if VARIABLES in params:
        raise ProfileError(
            path, f"{field}.params.{VARIABLES}", "reserved (declare tunables under parameters)"
        )
    parameters = _parameter_types(data, path, field)
    for name in sorted(references_in(params) - set(parameters)):
        raise ProfileError(path, f"{field}.params", f"${{{name}}} is not declared under parameters")
    _check_code(params, MECHANISMS[mechanism_name].code_keys, parameters, path, field, files)
    only_if = None
    if "only_if" in data:
        cond = data["only_if"]
        if (
            not isinstance(cond, Mapping)
            or len(cond) != 1
            or not (set(cond) <= {"installed", "param_set"})
        ):
            raise ProfileError(
                path, f"{field}.only_if", "{installed: <package>} or {param_set: <name>}"
            )
        only_if = Condition(**{str(k): str(v) for k, v in cond.items()})
        if only_if.param_set and only_if.param_set not in parameters:
            raise ProfileError(path, f"{field}.only_if", f"{only_if.param_set} is not a parameter")
    needs = _str_list(data, "needs", path, field)
    for package in needs:
        if not re.fullmatch(PACKAGE, package):
            raise ProfileError(path, f"{field}.needs", "Debian package names like cron")
    phase = data.get("phase")
    if phase is not None and (
        not isinstance(phase, int) or isinstance(phase, bool) or not 0 <= phase <= 99
    ):
        raise ProfileError(path, f"{field}.phase", "a whole number from 0 to 99")
    releases, releases_reason = _releases(data, path, field)
    control = Control(
        id=ident,
        title=_text(data, "title", path, field),
        area=_text(data, "area", path, field),
        rationale=_text(data, "rationale", path, field),
        severity=severity,
        references=refs,
        mechanism=str(mechanism_name),
        params=dict(params),
        parameter_types=parameters,
        only_if=only_if,
        source=path,
        needs=needs,
        phase=phase,
        files=tuple(files),
        releases=releases,
        releases_reason=releases_reason,
    )
    validate_params(control, control.parameters, path, field)
    return control


def _cis_references(data: Mapping[str, Any], path: str, field: str) -> tuple[CisReference, ...]:
    """``cis: {debian12: [5.1.20], debian13: [5.1.21]}`` with ``cis_level: 1``
    (or one level per benchmark: ``{debian12: 2, debian13: 1}``). A plain list
    names CIS Debian 12 v1.1.0 items, as catalogs did before Debian 13."""
    benchmarks = load_benchmarks()
    value = data.get("cis", []) or []
    if isinstance(value, list):
        value = {"debian12": value} if value else {}
    shape = "{" + ", ".join(f"{key}: [numbers]" for key in benchmarks) + "}"
    if not isinstance(value, Mapping):
        raise ProfileError(path, f"{field}.cis", f"recommendation numbers by benchmark, {shape}")
    level = data.get("cis_level")
    if not value:
        if level is not None:
            raise ProfileError(path, f"{field}.cis_level", "only with cis numbers")
        return ()
    if isinstance(level, Mapping):
        if set(level) != set(value):
            raise ProfileError(
                path, f"{field}.cis_level", "one level for each benchmark under cis, or one for all"
            )
        levels = dict(level)
    else:
        levels = dict.fromkeys(value, level)
    out = []
    for key in benchmarks:  # benchmark order, whatever the YAML's
        if key not in value:
            continue
        numbers = value[key]
        where = f"{field}.cis.{key}"
        if not isinstance(numbers, list) or not numbers:
            raise ProfileError(path, where, "recommendation numbers like 5.1.20")
        items = tuple(str(n) for n in numbers)
        if not all(isinstance(n, str | float) for n in numbers) or not all(
            re.fullmatch(NUMBER, n) for n in items
        ):
            raise ProfileError(path, where, "recommendation numbers like 5.1.20")
        benchmark = benchmarks[key]
        for number in items:
            if number not in benchmark.items:
                raise ProfileError(
                    path, where, f"recommendations of {benchmark.name} (no {number})"
                )
        chosen = levels[key]
        if isinstance(chosen, bool) or chosen not in (1, 2):
            raise ProfileError(path, f"{field}.cis_level", "1 or 2 (the server profile level)")
        out.append(CisReference(key, items, int(chosen)))
    for key in value:
        if key not in benchmarks:
            raise ProfileError(
                path, f"{field}.cis.{key}", "a benchmark" + suggest(str(key), benchmarks)
            )
    return tuple(out)


def _releases(data: Mapping[str, Any], path: str, field: str) -> tuple[tuple[str, ...], str]:
    """The releases a control applies to (all when it names none), and why only those."""
    value = data.get("releases")
    reason = data.get("releases_reason", "")
    if value is None:
        if reason:
            raise ProfileError(path, f"{field}.releases_reason", "only with releases")
        return (), ""
    known = known_releases()
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(r, int | str) and not isinstance(r, bool) for r in value)
        or not all(str(r) in known for r in value)
    ):
        raise ProfileError(path, f"{field}.releases", "Debian releases among " + ", ".join(known))
    if not isinstance(reason, str) or not reason.strip():
        raise ProfileError(
            path, f"{field}.releases_reason", "why the control applies to those releases only"
        )
    return tuple(sorted({str(r) for r in value}, key=known.index)), " ".join(reason.split())


def _anssi_references(data: Mapping[str, Any], path: str, field: str) -> tuple[str, ...]:
    """``anssi: [R9, R12]``: recommendation numbers of ANSSI BP-028 v2.0, each once."""
    items = _str_list(data, "anssi", path, field)
    if not all(re.fullmatch(ANSSI_ITEM, item) for item in items) or len(set(items)) != len(items):
        raise ProfileError(
            path, f"{field}.anssi", "ANSSI BP-028 v2.0 recommendations, each once, like [R9, R12]"
        )
    return items


def _other_references(
    data: Mapping[str, Any], path: str, field: str
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    value = data.get("references", {}) or {}
    expected = "a mapping of standards to lists of their ids, like {acme: [WEB-7]}"
    if not isinstance(value, Mapping):
        raise ProfileError(path, f"{field}.references", expected)
    out = []
    for source, idents in value.items():
        where = f"{field}.references.{source}"
        if not isinstance(source, str) or not re.fullmatch(REFERENCE_SOURCE, source):
            raise ProfileError(path, f"{field}.references", expected)
        if source.lower() in ("cis", "cis_level", "devsec", "anssi"):
            raise ProfileError(path, where, f"under the control's own {source.lower()} key")
        if isinstance(idents, str | int) and not isinstance(idents, bool):
            idents = [idents]
        if (
            not isinstance(idents, list)
            or not idents
            or not all(
                isinstance(i, str | int)
                and not isinstance(i, bool)
                and re.fullmatch(REFERENCE_ITEM, str(i))
                for i in idents
            )
        ):
            raise ProfileError(
                path, where, "a non-empty list of ids (letters, digits and _ . : / # ( ) -)"
            )
        out.append((source, tuple(str(i) for i in idents)))
    return tuple(out)


# Tab and newline are the only control characters bash code needs; a carriage
# return (a file saved with Windows line endings) would reach bash as part of
# a word, an escape sequence would reach a terminal through the apply log.
_CODE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _check_code(
    params: Mapping[str, Any],
    code_keys: frozenset[str],
    parameters: Mapping[str, ParamSpec],
    path: str,
    field: str,
    files: Sequence[CodeFile],
) -> None:
    """Bash in ``code_keys`` is plain text, and expands every declared
    parameter inside double quotes: its value is data, and unquoted it would
    still be split into words and globbed (``rm $path`` with a space in it)."""
    origin = {f.key: f.path for f in files}
    for key in sorted(code_keys):
        code = params.get(key)
        if not isinstance(code, str):
            continue  # the mechanism says what it wants
        where = f"{field}.params.{key}" + (".file" if key in origin else "")
        prefix = f"{origin[key]}: " if key in origin else ""
        bad = _CODE_CONTROL.search(code)
        if bad:
            line = code.count("\n", 0, bad.start()) + 1
            raise ProfileError(
                path,
                where,
                f"{prefix}bash without control characters other than tab and newline "
                f"(line {line} holds U+{ord(bad.group()):04X})",
            )
        if not parameters:
            continue
        try:
            unquoted = unquoted_expansions(code + "\n", set(parameters))
        except QuotingError as exc:
            raise ProfileError(path, where, f"{prefix}bash whose quoting ends ({exc})") from None
        if unquoted:
            first = unquoted[0]
            raise ProfileError(
                path,
                where,
                f'{prefix}every parameter expanded in double quotes ("${{{first.name}}}"); '
                + first.describe(),
            )


def _parameter_types(data: Mapping[str, Any], path: str, field: str) -> dict[str, ParamSpec]:
    value = data.get("parameters", {}) or {}
    if not isinstance(value, Mapping):
        raise ProfileError(path, f"{field}.parameters", "a mapping of names to {type, default}")
    out: dict[str, ParamSpec] = {}
    for name, declaration in value.items():
        # The name becomes a bash variable name: nothing else may pass.
        if not isinstance(name, str) or not re.fullmatch(NAME, name):
            raise ProfileError(
                path, f"{field}.parameters", "names like su_group ([a-z_][a-z0-9_]*)"
            )
        try:
            out[name] = parse_declaration(declaration)
        except ParamError as exc:
            raise ProfileError(
                path, f"{field}.parameters.{name}{exc.field}", exc.expected
            ) from None
    return out


def validate_params(control: Control, values: Mapping[str, Any], path: str, field: str) -> None:
    try:
        MECHANISMS[control.mechanism].parse(control.resolve_params(values))
    except ParamError as exc:
        raise ProfileError(path, f"{field}.params.{exc.field}", exc.expected) from None


def loads_document(path: Path | str, data: bytes | str) -> Any:
    """A catalog or profile file's YAML, read strictly; anything wrong with
    it is a ProfileError naming the file."""
    try:
        return loads_yaml(data)
    except DataError as exc:
        raise ProfileError(path, None, str(exc)) from None


def _catalog_files() -> list[tuple[str, bytes]]:
    files = sorted(catalog_dir().glob("*.yaml"))
    out = []
    for entry in files:
        name = f"hardening/data/controls/{entry.name}"
        try:
            out.append((name, read_regular(entry)))
        except DataError as exc:
            raise ProfileError(name, None, str(exc)) from None
    return out


def parse_catalog(sources: Sequence[tuple[str, str | bytes]]) -> Catalog:
    controls: dict[str, Control] = {}
    types: dict[str, tuple[ParamSpec, str]] = {}
    for path, text in sources:
        data = loads_document(path, text)
        if (
            not isinstance(data, Mapping)
            or set(data) != {"controls"}
            or not isinstance(data["controls"], list)
        ):
            raise ProfileError(path, None, "a mapping with one key, controls: a list")
        for index, item in enumerate(data["controls"]):
            control = parse_control(item, path, f"controls[{index}]")
            if control.id in controls:
                raise ProfileError(
                    path,
                    f"controls[{index}].id",
                    f"unique; {control.id} is also in {controls[control.id].source}",
                )
            for name, spec in control.parameter_types.items():
                known = types.setdefault(name, (spec, control.id))
                if known[0] != spec:
                    raise ProfileError(
                        path,
                        f"controls[{index}].parameters.{name}",
                        f"the same type and default as in {known[1]}",
                    )
            controls[control.id] = control
    return Catalog(controls)


@functools.cache
def load_catalog() -> Catalog:
    """Every control goldsmith ships, parsed and validated."""
    return parse_catalog(_catalog_files())


def catalog_dir() -> Path:
    return Path(str(resources.files("hardening") / "data" / "controls"))
