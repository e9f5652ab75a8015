"""The one strict reader of the JSON documents goldsmith writes itself.

``JsonFields`` gives typed access to one JSON object by dotted path; a field
that is missing or of the wrong type is an ``InputError`` naming the file and
the field. build.json is read with it (builder/record.py,
builder/record_sections.py). The signed statement is not: it has its own
decoder, whose strict mode verify reads it with (validate/statement.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.errors import InputError


class JsonFields:
    """Typed access to one JSON object by dotted path; a bad field is an InputError."""

    def __init__(self, data: Any, path: Path, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise InputError(path, prefix or None, "expected a JSON object")
        self.data, self.path, self.prefix = data, path, prefix

    def name(self, dotted: str) -> str:
        return f"{self.prefix}.{dotted}" if self.prefix else dotted

    def optional(self, dotted: str) -> Any:
        value: Any = self.data
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value

    def get(self, dotted: str) -> Any:
        value: Any = self.data
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                raise InputError(self.path, self.name(dotted), "missing")
            value = value[part]
        return value

    def obj(self, dotted: str) -> dict[str, Any]:
        value = self.get(dotted)
        if not isinstance(value, dict):
            raise InputError(self.path, self.name(dotted), "expected a JSON object")
        return value

    def text(self, dotted: str) -> str:
        value = self.get(dotted)
        if not isinstance(value, str):
            raise InputError(self.path, self.name(dotted), "expected a string")
        return value

    def integer(self, dotted: str) -> int:
        value = self.get(dotted)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(self.path, self.name(dotted), "expected an integer")
        return value

    def number(self, dotted: str) -> float:
        value = self.get(dotted)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(self.path, self.name(dotted), "expected a number")
        return value

    def digest(self, dotted: str) -> dict[str, str]:
        value = self.get(dotted)
        if (
            not isinstance(value, dict)
            or "sha256" not in value
            or not all(isinstance(v, str) for v in value.values())
        ):
            raise InputError(
                self.path, self.name(dotted), 'expected {"sha256": "<hex>", ...} digests'
            )
        return dict(value)

    def names(self, dotted: str) -> list[str]:
        value = self.get(dotted)
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            raise InputError(self.path, self.name(dotted), "expected names")
        return list(value)
