"""Hostile values of the inputs this project added late: the spec's
``compression`` and a control's ``anssi`` references. Each is refused at load
in one line naming the field (exit 2 from the CLI; a value quoted back is
escaped), and never reaches a shell. (A single string for anssi, as for cis
and devsec, is read as a one-item list.)"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from builder.cli import cli
from hardening.errors import ProfileError
from hardening.profile import load_profile

SPEC = """\
name: compressed
version: 1.0.0
base:
  debootstrap:
    suite: bookworm
profile: baseline
"""

HOSTILE_COMPRESSION = {
    "command substitution": "'$(touch /tmp/pwned)'",
    "option splice": "'zstd,preallocation=full'",
    "another qemu option": "'zlib -o backing_file=/etc/shadow'",
    "upper case": "ZSTD",
    "empty": "''",
    "number": "1",
    "list": "[zstd]",
    "mapping": "{type: zstd}",
    "null": "null",
    "newline": '"zstd\\nzlib"',
}


@pytest.mark.parametrize("name", list(HOSTILE_COMPRESSION))
def test_a_hostile_compression_is_refused_in_one_line(tmp_path: Path, name: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC + f"compression: {HOSTILE_COMPRESSION[name]}\n")
    result = CliRunner().invoke(cli, ["lint", str(spec)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip() and "hint:" not in line]
    assert len(lines) == 1, result.output
    assert "compression" in lines[0] and lines[0].isprintable()
    # A value may be quoted back, escaped, inside that one line; nothing ran it.
    assert not Path("/tmp/pwned").exists()


PROFILE = """\
id: acme
version: 1.0.0
title: Own control
extends: baseline
controls:
  - id: acme.issue
    title: The issue file exists
    area: acme
    rationale: Users are told the rules before they log in.
    anssi: {value}
    mechanism: script
    params:
      expected: /etc/issue exists
      check: test -e /etc/issue
"""

HOSTILE_ANSSI = {
    "command substitution": "['$(touch /tmp/pwned)']",
    "out of range": "[R81]",
    "zero": "[R0]",
    "leading zero": "[R012]",
    "lower case": "[r12]",
    "twice": "[R12, R12]",
    "a number": "[12]",
    "a mapping": "[{R: 12}]",
    "newline": '["R12\\nR13"]',
}


@pytest.mark.parametrize("name", list(HOSTILE_ANSSI))
def test_a_hostile_anssi_reference_is_refused_in_one_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(textwrap.dedent(PROFILE).replace("{value}", HOSTILE_ANSSI[name]))
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    message = str(raised.value)
    assert "anssi" in message and len(message.splitlines()) == 1
    assert not Path("/tmp/pwned").exists()


def test_the_seed_profile_loads(tmp_path: Path) -> None:
    """The refusals above are the anssi field's, not a broken document's."""
    path = tmp_path / "acme.yaml"
    path.write_text(PROFILE.replace("{value}", "[R12, R80]"))
    control = next(c for c in load_profile(path).controls if c.id == "acme.issue")
    assert control.control.references.anssi == ("R12", "R80")
