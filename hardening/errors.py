"""Errors raised while loading the catalog and profiles.

They are ValueErrors (bad data, not bad code) that name the file, the field and
what was expected, so a caller can show one line without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class ProfileError(ValueError):
    """A profile or catalog file holds something it should not."""

    def __init__(self, path: Path | str | None, field: str | None, expected: str) -> None:
        self.path = path
        self.field = field
        self.expected = expected
        where = str(path) if path is not None else "<profile>"
        if field:
            where = f"{where}: {field}"
        super().__init__(f"{where}: {expected}")


class ParamError(ValueError):
    """A mechanism's parameters are malformed; the loader adds the file and control."""

    def __init__(self, field: str, expected: str) -> None:
        self.field = field
        self.expected = expected
        super().__init__(f"{field}: {expected}")


class FactsError(ValueError):
    """Evidence needed by a check is missing or could not be parsed."""


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the nearest choice, or ''."""
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""
