"""Kernel command-line parameters: set through /etc/default/grub.d (Debian's
grub-mkconfig reads it after /etc/default/grub) and update-grub; checked in
/proc/cmdline (this boot) and in grub.cfg's linux lines (the next boot)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from hardening.compare import Expect
from hardening.errors import FactsError, ParamError
from hardening.facts import Facts, Probe, probe_file
from hardening.mechanisms.base import Mechanism, Outcome, error, get_str
from hardening.results import Status
from hardening.shell import ere_escape, q

CMDLINE = probe_file("/proc/cmdline")
GRUB_LINUX = Probe(
    "grub-linux-lines",
    "grep -hE '^[[:space:]]*linux[[:space:]]' /boot/grub/grub.cfg 2>/dev/null",
    isolated=False,
)
GRUB_FILE = "/etc/default/grub.d/60-goldsmith.cfg"


@dataclasses.dataclass(frozen=True)
class CmdlineSpec:
    name: str
    expect: Expect
    write: str


def param_values(line: str, name: str) -> list[str]:
    values = []
    for word in line.split():
        key, sep, value = word.partition("=")
        if key == name:
            values.append(value if sep else "")
    return values


class Cmdline(Mechanism[CmdlineSpec]):
    name = "cmdline"
    phase = 45
    keys = frozenset({"name", "value", "match"})
    required = frozenset({"name", "value"})

    def build(self, params: Mapping[str, Any]) -> CmdlineSpec:
        name = get_str(params, "name", r"[a-z0-9_.-]+")
        expect = Expect.parse(params, "value")
        write = expect.apply_value()
        if write is None or not re.fullmatch(r"[A-Za-z0-9_.,:-]+", write):
            raise ParamError("value", "a plain value")
        return CmdlineSpec(name, expect, write)

    def render(self, spec: CmdlineSpec) -> str:
        line = f'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX {spec.name}={spec.write}"'
        pattern = rf'^GRUB_CMDLINE_LINUX="\$GRUB_CMDLINE_LINUX {ere_escape(spec.name)}='
        # The line is written literally; grub-mkconfig expands it when it sources the file.
        return (
            "# shellcheck disable=SC2016 # $GRUB_CMDLINE_LINUX is grub-mkconfig's to expand\n"
            f"gs_set_line {GRUB_FILE} {q(pattern)} {q(line)} grub"
        )

    def probes(self, spec: CmdlineSpec) -> list[Probe]:
        return [CMDLINE, GRUB_LINUX]

    def evaluate(self, spec: CmdlineSpec, facts: Facts) -> Outcome:
        expected = f"{spec.name} {spec.expect.describe()} (running kernel and grub.cfg)"
        try:
            cmdline = facts.get(CMDLINE.name)
            grub = facts.get(GRUB_LINUX.name)
        except FactsError as exc:
            return error(expected, str(exc))
        if cmdline.rc != 0 or not cmdline.text.strip():
            return error(expected, "/proc/cmdline unreadable")
        live = param_values(cmdline.text, spec.name)
        live_ok = bool(live) and spec.expect.test(live[-1])
        lines = [line for line in grub.text.splitlines() if line.strip()]
        saved = [param_values(line, spec.name) for line in lines]
        saved_ok = bool(lines) and all(v and spec.expect.test(v[-1]) for v in saved)
        live_text = f"{spec.name}={live[-1]}" if live else "not set"
        if not lines:
            saved_text = "no linux lines in grub.cfg"
        else:
            unset = sum(1 for v in saved if not v)
            saved_text = f"{len(lines) - unset} of {len(lines)} grub.cfg entries set it"
            values = sorted({v[-1] for v in saved if v})
            if values:
                saved_text += f" ({', '.join(values)})"
        ok = live_ok and saved_ok
        return Outcome(
            Status.passed if ok else Status.failed, expected, f"cmdline {live_text}; {saved_text}"
        )
