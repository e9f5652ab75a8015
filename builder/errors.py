"""The errors of building, beside the family every goldsmith error belongs to.

GoldsmithError and InputError are defined in ``hardening.errors`` (so the
catalog and profile loaders raise InputErrors too) and re-exported here.
"""

from __future__ import annotations

from hardening.errors import GoldsmithError, InputError

__all__ = ["BuildError", "GoldsmithError", "GuestError", "InputError", "ToolError"]


class ToolError(GoldsmithError):
    """An external program is missing or failed."""


class BuildError(GoldsmithError):
    """A build step failed inside or around the build VM."""


class GuestError(GoldsmithError):
    """The guest never came up, or the connection to it broke."""
