"""The one error family the CLI knows how to show, and the errors of the
catalog and profile loaders.

Every failure a user can cause or meet is a GoldsmithError: the CLI prints
``diagnostics()`` as one line (plus a hint) and exits with ``exit_code``; only
``--debug`` shows a traceback. The family is defined here, at the bottom of the
house, because ``hardening`` imports neither ``builder`` nor ``validate`` and
its loaders raise InputErrors too; ``builder.errors`` re-exports it beside the
errors of building.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class GoldsmithError(Exception):
    """A failure to report to the user without a traceback (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class InputError(GoldsmithError):
    """Bad input (spec, profile, key, image, manifest): exit code 2.

    The message names the file, the field and what was expected.
    """

    exit_code = 2

    def __init__(
        self,
        path: Path | str | None,
        field: str | None,
        expected: str,
        *,
        hint: str | None = None,
    ) -> None:
        where = str(path) if path is not None else "<input>"
        if field:
            where = f"{where}: {field}"
        super().__init__(f"{where}: {expected}", hint=hint)
        self.path = path
        self.field = field
        self.expected = expected


class ProfileError(InputError, ValueError):
    """A profile, catalog or benchmark file holds something it should not.

    Bad input like any other (the CLI shows it as it shows a bad spec), and
    still a ValueError: bad data, not bad code, for callers that catch those.
    """


class ParamError(ValueError):
    """A mechanism's parameters are malformed; the loader adds the file and control."""

    def __init__(self, field: str, expected: str) -> None:
        self.field = field
        self.expected = expected
        super().__init__(f"{field}: {expected}")


class FactsError(ValueError):
    """Evidence needed by a check is missing or could not be parsed."""


def suggest(word: str, choices: Iterable[str]) -> str:
    """The nearest choice to ``word`` as "; did you mean 'x'?", or nothing: the one
    way goldsmith answers an unknown key or value, in a spec, profile, catalog
    or policy alike."""
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
