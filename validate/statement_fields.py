"""How a statement's fields are read: one JSON object at a time, in one of two modes.

``Fields`` holds the reading of each field type (text, integer, flag, object,
list, a mapping of strings) in both modes; validate/statement.py's
``LenientFields`` and ``StrictFields`` only name the mode, so its one decoder
reads the statement the same way for ``report``, ``history`` and ``outdated``
(lenient) and for ``verify`` after the signatures (strict).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, NoReturn, Self, TypeVar

from builder.errors import InputError

_T = TypeVar("_T")


class Fields:
    """One JSON object of a document with its dotted path for messages, read in
    one of two modes, which the subclasses name. Both: a present field of the
    wrong type is an InputError. Lenient: an absent field (or null) reads as
    None, an absent object as empty, an absent list as []. Strict: an absent
    field is "missing", and an object that is absent or no object reads as one
    in which every field is missing (what a dotted path through it finds)."""

    strict: ClassVar[bool] = False

    def __init__(self, source: Path, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise InputError(source, where or None, "expected a JSON object")
        self.source, self.where, self.data = source, where, data

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, expected: str) -> NoReturn:
        raise InputError(self.source, self.path(key), expected)

    def value(self, key: str) -> Any:
        """The field as it is; None when absent, which the strict mode refuses."""
        if self.strict and key not in self.data:
            self.fail(key, "missing")
        return self.data.get(key)

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.value(key)
        if value is None and not (required or self.strict):
            return None
        if not isinstance(value, str) or (required and not value):
            self.fail(key, "expected a string")
        return value

    def need(self, key: str) -> str:
        """A string that must be there and not empty."""
        return known(self.text(key, required=True))

    def integer(self, key: str) -> int | None:
        value = self.value(key)
        if value is None and not self.strict:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, "expected an integer")
        return value

    def flag(self, key: str) -> bool | None:
        value = self.value(key)
        if value is None and not self.strict:
            return None
        if not isinstance(value, bool):
            self.fail(key, "expected true or false")
        return value

    def obj(self, key: str) -> Self:
        value = self.data.get(key)
        if value is None or (self.strict and not isinstance(value, dict)):
            value = {}  # lenient: every field below is absent; strict: missing
        return type(self)(self.source, self.path(key), value)

    def section(self, key: str) -> Self:
        """An object the strict mode requires to be there and be one."""
        if not self.strict:
            return self.obj(key)
        return type(self)(self.source, self.path(key), self.value(key))

    def raw_list(self, key: str) -> list[Any]:
        value = self.value(key)
        if value is None and not self.strict:
            return []
        if not isinstance(value, list):
            self.fail(key, "expected a list")
        return value

    def item(self, key: str, index: int, value: Any) -> Self:
        return type(self)(self.source, self.path(f"{key}[{index}]"), value)

    def objs(self, key: str) -> list[Self]:
        return [self.item(key, i, value) for i, value in enumerate(self.raw_list(key))]

    def strings(self, key: str) -> tuple[tuple[str, str], ...]:
        """An object whose values are all strings, e.g. a digest set or a tool list."""
        fields = self.obj(key)
        pairs = []
        for name, value in fields.data.items():
            if not isinstance(value, str):
                fields.fail(str(name), "expected a string")
            pairs.append((str(name), value))
        return tuple(pairs)


def known(value: _T | None) -> _T:
    """A value read in a way that refuses its absence."""
    if value is None:
        raise AssertionError("a field read as required came back absent")
    return value
