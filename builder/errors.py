"""The one error family the CLI knows how to show.

Every failure a user can cause or meet is a GoldsmithError: the CLI prints
``diagnostics()`` as one line (plus a hint) and exits with ``exit_code``; only
``--debug`` shows a traceback.
"""

from __future__ import annotations

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


class ToolError(GoldsmithError):
    """An external program is missing or failed."""


class BuildError(GoldsmithError):
    """A build step failed inside or around the build VM."""


class GuestError(GoldsmithError):
    """The guest never came up, or the connection to it broke."""
