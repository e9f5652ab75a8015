"""One control read from its YAML mapping, strictly: unknown keys, ids,
references, conditions, parameters and the bash of code keys, each refused with
a one-line ProfileError naming the file and the key path. Loading refuses bash
in which a declared parameter is expanded outside double quotes.

A profile may define controls of its own (hardening.custom): the same fields,
parsed here with ``custom=True``, under an id ``<namespace>.<id>`` that no
shipped id (which never holds a dot) can equal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from hardening.benchmarks import NUMBER, known_releases, load_benchmarks
from hardening.control import (
    CisReference,
    CodeFile,
    Condition,
    Control,
    References,
    Severity,
    references_in,
)
from hardening.errors import ParamError, ProfileError, suggest
from hardening.mechanisms import MECHANISMS
from hardening.mechanisms.parameters import NAME, VARIABLES, ParamSpec, parse_declaration
from hardening.mechanisms.quoting import QuotingError, unquoted_expansions

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
# ANSSI BP-028 numbers its recommendations R1 to R80.
ANSSI_ITEM = r"R([1-9]|[1-7][0-9]|80)"


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
