"""What every mechanism provides: parse its parameters into a typed spec, render
the apply side as bash, name the probes its check needs, and judge the evidence."""

from __future__ import annotations

import abc
import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from hardening.compare import Expect
from hardening.errors import ParamError
from hardening.facts import Facts, Probe
from hardening.results import Status

SpecT = TypeVar("SpecT")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One keyed value a check expects, and the value the apply side writes
    for it (None when it writes nothing)."""

    key: str
    expect: Expect
    write: str | None


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: Status  # passed | failed | error | skipped
    expected: str
    observed: str
    reason: str = ""


class Mechanism(abc.ABC, Generic[SpecT]):
    name: ClassVar[str]
    # Apply order: packages first (their files must exist before we edit them),
    # then configuration, then services, then anything that depends on all of it.
    phase: ClassVar[int] = 50
    # Parameters this mechanism accepts, for unknown-key errors.
    keys: ClassVar[frozenset[str]] = frozenset()
    required: ClassVar[frozenset[str]] = frozenset()
    # Keys whose strings are bash. A ${name} in them is never replaced by the
    # parameter's value: the catalog hands the values over under VARIABLES and
    # the mechanism assigns them as quoted shell variables ahead of the code
    # (hardening.mechanisms.parameters.shell_assignments), so a value is only
    # ever data. Every other key gets the values themselves, checked against
    # their declared types, and its mechanism quotes what it renders.
    code_keys: ClassVar[frozenset[str]] = frozenset()

    def parse(self, params: Mapping[str, Any]) -> SpecT:
        check_keys(params, self.keys, self.required)
        return self.build(params)

    @abc.abstractmethod
    def build(self, params: Mapping[str, Any]) -> SpecT: ...

    @abc.abstractmethod
    def render(self, spec: SpecT) -> str:
        """Bash run between gs_begin and gs_end; calls gs_changed when it changes anything."""

    @abc.abstractmethod
    def probes(self, spec: SpecT) -> list[Probe]: ...

    @abc.abstractmethod
    def evaluate(self, spec: SpecT, facts: Facts) -> Outcome: ...


def check_keys(
    params: Mapping[str, Any], allowed: frozenset[str], required: frozenset[str]
) -> None:
    from hardening.errors import suggest

    for key in params:
        if key not in allowed:
            raise ParamError(str(key), "unknown parameter" + suggest(str(key), allowed))
    for key in sorted(required):
        if key not in params:
            raise ParamError(key, "required")


def get_str(params: Mapping[str, Any], key: str, pattern: str | None = None) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise ParamError(key, "a non-empty string")
    if pattern and not re.fullmatch(pattern, value):
        raise ParamError(key, f"a string matching {pattern}")
    return value


def get_opt_str(params: Mapping[str, Any], key: str, default: str = "") -> str:
    value = params.get(key, default)
    if not isinstance(value, str):
        raise ParamError(key, "a string")
    return value


def get_str_list(
    params: Mapping[str, Any], key: str, pattern: str | None = None
) -> tuple[str, ...]:
    value = params.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not value:
        raise ParamError(key, "a non-empty list of strings")
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, str | int) or isinstance(item, bool):
            raise ParamError(f"{key}[{index}]", "a string")
        text = str(item)
        if pattern and not re.fullmatch(pattern, text):
            raise ParamError(f"{key}[{index}]", f"a string matching {pattern}")
        out.append(text)
    return tuple(out)


def get_bool(params: Mapping[str, Any], key: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise ParamError(key, "true or false")
    return value


def get_mapping_list(params: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = params.get(key)
    if not isinstance(value, list) or not value:
        raise ParamError(key, "a non-empty list of mappings")
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ParamError(f"{key}[{index}]", "a mapping")
    return list(value)


def get_settings(
    params: Mapping[str, Any],
    key: str,
    key_pattern: str,
    key_hint: str,
    *,
    join_list_write: bool = False,
) -> Iterator[tuple[str, Setting]]:
    """(field, setting) for each mapping of ``params[key]``: a key matching
    ``key_pattern``, an expectation (value or match) and an optional write.

    Without a write, the apply side writes the value the expectation implies.
    Items are yielded one at a time so that the caller's own check of the
    written value fails on the first bad item, before later items are read.
    """
    for index, item in enumerate(get_mapping_list(params, key)):
        field = f"{key}[{index}]"
        name = item.get("key")
        if not isinstance(name, str) or not re.fullmatch(key_pattern, name):
            raise ParamError(f"{field}.key", key_hint)
        unknown = set(item) - {"key", "value", "match", "write"}
        if unknown:
            raise ParamError(f"{field}.{sorted(unknown)[0]}", "unknown (key, value, match, write)")
        expect = Expect.parse(item, field)
        write = item.get("write")
        if join_list_write and isinstance(write, list):
            write_text: str | None = " ".join(str(w) for w in write)
        elif write is not None:
            write_text = str(write)
        else:
            write_text = expect.apply_value()
        yield field, Setting(name, expect, write_text)


def failed_or_passed(ok: bool, expected: str, observed: str) -> Outcome:
    return Outcome(Status.passed if ok else Status.failed, expected, observed)


def error(expected: str, observed: str) -> Outcome:
    return Outcome(Status.error, expected, observed)
