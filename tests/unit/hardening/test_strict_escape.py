"""strictdata.escape: a document's text made safe for one log or error line,
whatever characters it holds."""

from __future__ import annotations

import pytest

from hardening.strictdata import DataError, escape, loads_json


def test_a_lone_surrogate_beside_other_non_ascii_text_is_escaped_not_raised() -> None:
    # A JSON key "\u00a0\ud800" twice: a duplicate key named in the error.
    assert escape("\u00a0\ud800") == "\u00a0\\ud800"
    with pytest.raises(DataError) as caught:
        loads_json('{"\\u00a0\\ud800": 1, "\\u00a0\\ud800": 2}')
    assert "\\ud800" in str(caught.value)
    str(caught.value).encode("utf-8")  # printable as UTF-8


def test_control_characters_and_bidi_overrides_are_shown_as_escapes() -> None:
    assert escape("a\x1b[31m\u202eb") == "a\\x1b[31m\\u202eb"


def test_long_text_is_cut() -> None:
    assert escape("x" * 300, limit=10) == "xxxxxxx..."
