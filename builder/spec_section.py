"""One mapping of a spec, read with the key path that leads to it.

``Section`` refuses a value that is no mapping, unknown keys (with the nearest
known one suggested) and missing required keys; its typed getters (strings
without control characters, patterns, booleans, bounded integers, package
names, URLs, digests) name the full key path in every error. The spec's
loader (builder/spec.py) and the provisioning steps' parser
(builder/provision.py) read every YAML mapping of a spec through it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.errors import InputError
from builder.spec_values import (
    CONTROL,
    MAX_PATH,
    MAX_SCRIPT,
    PACKAGE,
    SHA256,
    check_text,
    describe,
    show,
    url_problem,
)
from hardening.errors import suggest


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class Section:
    """One mapping of the spec, with the key path that leads to it.

    Construction rejects a non-mapping, unknown keys and missing required
    keys; the typed getters then name the full key path in every error.
    """

    def __init__(self, path: Path, where: str, value: Any, keys: Mapping[str, bool]) -> None:
        self.path = path
        self.where = where
        if not isinstance(value, dict):
            raise self.error(None, f"expected a mapping of keys, got {describe(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.error(None, f"expected string keys, got key {describe(key)}")
            if CONTROL.search(key) or len(key) > 64:
                raise self.error(None, f"expected keys of printable characters, got {show(key)}")
            if key not in keys:
                raise self._unknown(key, keys)
        for key, required in keys.items():
            if required and key not in value:
                raise self.error(key, "required key is missing")
        self.data: dict[str, Any] = value

    def field(self, key: str | None) -> str:
        if key is None:
            return self.where
        return _join(self.where, key)

    def error(self, key: str | None, expected: str, *, hint: str | None = None) -> InputError:
        return InputError(self.path, self.field(key) or None, expected, hint=hint)

    def _unknown(self, key: str, keys: Mapping[str, bool]) -> InputError:
        known = sorted(keys)
        expected = "unknown key" + suggest(key, known)
        return self.error(key, expected, hint="valid keys here: " + ", ".join(known))

    def has(self, key: str) -> bool:
        return key in self.data

    def string(self, key: str, *, default: str | None = None, multiline: bool = False) -> str:
        """Every string of the spec comes through here: no control characters
        anywhere, whatever the field, before any field-specific pattern.

        ``multiline`` is for text that is a document of its own (an inline
        script): newlines and tabs are allowed there, other controls are not.
        """
        if key not in self.data and default is not None:
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {describe(value)}")
        if not value:
            raise self.error(key, "expected a non-empty string")
        check_text(
            value.replace("\n", " ").replace("\t", " ") if multiline else value,
            lambda expected: self.error(key, expected),
            limit=MAX_SCRIPT if multiline else MAX_PATH,
        )
        return value

    def pattern(self, key: str, regex: re.Pattern[str], expected: str) -> str:
        value = self.string(key)
        if regex.fullmatch(value) is None:
            raise self.error(key, f"expected {expected}, got {show(value)}")
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        if key not in self.data:
            return default
        value = self.data[key]
        # A quoted "yes" or "false" is a string, and a non-empty string would
        # be truthy: refuse anything that is not a real YAML boolean.
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {describe(value)}")
        return value

    def integer(self, key: str, *, default: int, minimum: int, maximum: int, unit: str = "") -> int:
        if key not in self.data:
            return default
        value = self.data[key]
        # bool is a subclass of int in Python; `memory: true` is a mistake.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer{unit}, got {describe(value)}")
        if value < minimum:
            raise self.error(key, f"expected at least {minimum}{unit}, got {value}")
        if value > maximum:
            raise self.error(key, f"expected at most {maximum}{unit}, got {value}")
        return value

    def packages(self, key: str) -> tuple[str, ...]:
        if key not in self.data:
            return ()
        value = self.data[key]
        if not isinstance(value, list):
            raise self.error(key, f"expected a list of package names, got {describe(value)}")
        names: list[str] = []
        for index, item in enumerate(value):
            field = f"{self.field(key)}[{index}]"
            if not isinstance(item, str):
                raise InputError(self.path, field, f"expected a package name, got {describe(item)}")
            if PACKAGE.fullmatch(item) is None:
                raise InputError(
                    self.path,
                    field,
                    f"expected a Debian package name (a-z, 0-9, '+', '-', '.'; two to 128 "
                    f"characters, starting a-z or 0-9), got {show(item)}",
                )
            names.append(item)
        return tuple(names)

    def url(self, key: str, *, default: str | None = None, query: bool = False) -> str:
        value = self.string(key, default=default)
        problem = url_problem(value, query=query)
        if problem is not None:
            raise self.error(key, problem)
        return value

    def sha256(self, key: str) -> str:
        value = self.string(key)
        if SHA256.fullmatch(value) is None:
            raise self.error(key, f"expected a SHA-256 digest of 64 hex digits, got {show(value)}")
        return value.lower()

    def section(self, key: str, keys: Mapping[str, bool]) -> Section:
        return Section(self.path, self.field(key), self.data.get(key, {}), keys)
