"""The golden envelopes in tests/data/envelopes: fixed bytes, fixed verdicts.

Each file was made once (by tests/data/envelopes/generate.py, with a throwaway
key) and is read here as committed; verdicts.json says whether verify must
trust it and, if not, the reason it must give. A change to how envelopes are
read cannot quietly start accepting one of these.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest

from hardening.strictdata import escape
from validate.claims import VerificationError
from validate.policy import Pins
from validate.verify import verify_artifact

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "envelopes"
VERDICTS: dict[str, dict[str, Any]] = json.loads((GOLDEN / "verdicts.json").read_text())
NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


def verify(name: str, pins: dict[str, str] | None = None) -> Any:
    given = pins or {}
    return verify_artifact(
        image=GOLDEN / "disk.qcow2",
        manifest=GOLDEN / name,
        keys=[GOLDEN / "golden.pub"],
        pins=Pins(
            name=given.get("name"),
            version=given.get("version"),
            min_version=given.get("min_version"),
            profile=given.get("profile"),
            profile_digest=given.get("profile_digest"),
        ),
        now=NOW,
    )


def test_every_envelope_has_a_verdict_and_every_verdict_a_file() -> None:
    files = {p.name for p in GOLDEN.glob("*.dsse.json")}
    assert files == set(VERDICTS)
    assert sum(not v["trusted"] for v in VERDICTS.values()) >= 25


@pytest.mark.parametrize("name", sorted(n for n, v in VERDICTS.items() if v["trusted"]))
def test_good_envelopes_are_trusted(name: str) -> None:
    verdict = verify(name, VERDICTS[name].get("pins"))
    assert verdict.claims.template_name == "debian-12-baseline"
    assert verdict.describe().startswith("TRUSTED: debian-12-baseline 1.2.0")


@pytest.mark.parametrize("name", sorted(n for n, v in VERDICTS.items() if not v["trusted"]))
def test_evil_envelopes_are_not_trusted(name: str) -> None:
    expected = VERDICTS[name]
    with pytest.raises(VerificationError) as caught:
        verify(name, expected.get("pins"))
    error = caught.value
    assert error.exit_code == 1
    assert error.hint is None
    shown = escape(error.message, 2000)
    assert "\n" not in shown and "\r" not in shown and "\x1b" not in shown
    assert re.search(expected["reason"], shown), shown
