"""The guest as checks see it: the part of testinfra's ``Host`` goldsmith uses.

Defined here, beside the checks, because ``hardening`` imports neither
``builder`` nor ``validate``: validation hands the checks a testinfra host on
its pinned connection (``validate.host.pinned_host``), and unit tests hand
them fakes of this shape.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol


class CommandResult(Protocol):
    """What one remote command left (testinfra's ``CommandResult``)."""

    @property
    def rc(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


class Host(Protocol):
    """``run`` quotes its arguments into the command, as testinfra does
    (``host.run("stat -c %%a %s", path)``), so data never becomes shell;
    ``sudo`` runs the commands of its block as root."""

    def run(self, command: str, *args: str) -> CommandResult: ...

    def sudo(self, user: str | None = None) -> AbstractContextManager[None]: ...
