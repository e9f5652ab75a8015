"""The apt proxy, a new input: the spec's apt_proxy section and the host
variable it names, each hostile value refused by `goldsmith lint` (which reads
them as a build would) with exit 2 and one line that never repeats the value."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from builder.cli import cli

VARIABLE = "GS_ADVERSARIAL_APT_PROXY"
SECRET = "tok3n-never-shown"
SPEC = """\
name: proxied
version: 1.0.0
base:
  debootstrap:
    suite: bookworm
profile: baseline
"""

# Each tries to leave apt.conf's quoted string, add a statement or run a command.
HOSTILE_URLS = {
    "command substitution": f"http://u:{SECRET}@proxy:3128/$(touch /tmp/pwned)",
    "backticks": f"http://u:{SECRET}@proxy`id`:3128",
    "semicolon": f'http://u:{SECRET}@proxy:3128";APT::Update::Pre-Invoke {{"id"}};"',
    "newline": f"http://u:{SECRET}@proxy:3128\nAcquire::http::Proxy::x DIRECT;",
    "double quote": f'http://u:{SECRET}@proxy:3128"',
    "single quote": f"http://u:{SECRET}@proxy:3128'",
    "backslash": f"http://u:{SECRET}@proxy\\:3128",
    "braces": f"http://u:{SECRET}@proxy:3128{{}}",
    "space": f"http://u:{SECRET}@proxy:3128 x",
    "tab": f"http://u:{SECRET}@proxy:3128\tx",
    "escape sequence": f"http://u:{SECRET}@proxy:3128\x1b[2J",
    "file scheme": f"file:///etc/{SECRET}",
    "no scheme": f"{SECRET}@proxy:3128",
    "a path": f"http://u:{SECRET}@proxy:3128/apt",
    "bad port": f"http://u:{SECRET}@proxy:99999",
    "empty": "",
}

HOSTILE_SECTIONS = {
    "a URL in the spec": "apt_proxy: http://u:p@proxy:3128\n",
    "variable with $( )": "apt_proxy: {env_from_host: '$(id)'}\n",
    "variable with a newline": 'apt_proxy: {env_from_host: "A\\nB"}\n',
    "direct host with a quote": "apt_proxy: {env_from_host: P, direct: ['x\";']}\n",
    "direct host with a space": "apt_proxy: {env_from_host: P, direct: ['a b']}\n",
    "direct host with $( )": "apt_proxy: {env_from_host: P, direct: ['$(id)']}\n",
    "direct host with a newline": 'apt_proxy: {env_from_host: P, direct: ["a\\nb"]}\n',
    "direct not a list": "apt_proxy: {env_from_host: P, direct: host}\n",
    "unknown key": "apt_proxy: {env_from_host: P, url: x}\n",
    "duplicate key": "apt_proxy: {env_from_host: P, env_from_host: Q}\n",
}


def lint(tmp_path: Path, text: str) -> tuple[int, str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(text))
    result = CliRunner().invoke(cli, ["lint", str(spec)])
    return result.exit_code, result.output


def error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip() and "hint:" not in line]
    assert len(lines) == 1, output
    assert lines[0].isprintable(), repr(lines[0])
    return lines[0]


@pytest.mark.parametrize("name", list(HOSTILE_URLS))
def test_a_hostile_proxy_value_is_refused_without_being_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(VARIABLE, HOSTILE_URLS[name])
    code, output = lint(tmp_path, SPEC + f"apt_proxy: {{env_from_host: {VARIABLE}}}\n")
    assert code == 2, output
    line = error_line(output)
    assert "apt_proxy.env_from_host" in line
    assert SECRET not in output


@pytest.mark.parametrize("name", list(HOSTILE_SECTIONS))
def test_a_hostile_apt_proxy_section_is_refused(tmp_path: Path, name: str) -> None:
    code, output = lint(tmp_path, SPEC + HOSTILE_SECTIONS[name])
    assert code == 2, output
    assert "apt_proxy" in error_line(output) or "duplicate" in output
