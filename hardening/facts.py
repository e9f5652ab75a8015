"""Evidence from a host: named probes (shell commands) run in one script whose
output is cut into sections by a marker no file content can forge.

A mechanism says which probes it needs; gather runs the union once. Facts maps
each probe name to what it printed and its exit status.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import re
import secrets
import shlex
from collections.abc import Iterable, Mapping

from hardening.errors import FactsError

# Globs are spliced into the script unquoted so the shell expands them; only a
# plain path alphabet is allowed so catalog data can never inject shell syntax.
SAFE_GLOB = re.compile(r"^/[A-Za-z0-9_./*?\[\]+@:-]*$")
SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+@:-]*$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.@:+-]+$")


@dataclasses.dataclass(frozen=True)
class Probe:
    """One section of evidence: ``name`` identifies it, ``command`` produces it."""

    name: str
    command: str


@dataclasses.dataclass(frozen=True)
class Section:
    rc: int
    text: str


@dataclasses.dataclass(frozen=True)
class Facts:
    sections: Mapping[str, Section]

    def get(self, name: str) -> Section:
        try:
            return self.sections[name]
        except KeyError:
            raise FactsError(f"no evidence gathered for {name!r}") from None

    def text(self, name: str) -> str:
        return self.get(name).text

    def merged(self, other: Facts) -> Facts:
        return Facts({**self.sections, **other.sections})


def render_gather_script(probes: Iterable[Probe], marker: str | None = None) -> tuple[str, str]:
    """The script printing every probe's section, and the marker it uses."""
    mark = marker or f"@@goldsmith-{secrets.token_hex(8)}@@"
    lines = [
        "export LC_ALL=C LANG=C",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "shopt -s nullglob",
        f"GS_MARK={shlex.quote(mark)}",
    ]
    seen: set[str] = set()
    for probe in probes:
        if probe.name in seen:
            continue
        seen.add(probe.name)
        lines.append(f'printf "%s begin %s\\n" "$GS_MARK" {shlex.quote(probe.name)}')
        lines.append(f"( {probe.command}\n) </dev/null")
        lines.append('printf "\\n%s end %d\\n" "$GS_MARK" "$?"')
    return "\n".join(lines) + "\n", mark


def wrap_for_run(script: str) -> tuple[str, str]:
    """A (format, argument) pair for host.run that runs ``script`` with bash.

    One argument to exec is limited to 128 KiB on Linux, so long scripts travel
    gzip-compressed and base64-encoded.
    """
    if len(script) < 64_000:
        return "bash -c %s", script
    packed = base64.b64encode(gzip.compress(script.encode())).decode()
    return "echo %s | base64 -d | gunzip | bash", packed


def parse_sections(output: str, mark: str) -> Facts:
    sections: dict[str, Section] = {}
    pattern = re.compile(
        re.escape(mark)
        + r" begin (?P<name>[^\n]*)\n(?P<body>.*?)\n"
        + re.escape(mark)
        + r" end (?P<rc>\d+)\n",
        re.DOTALL,
    )
    for match in pattern.finditer(output):
        sections[match.group("name")] = Section(int(match.group("rc")), match.group("body"))
    return Facts(sections)


# ---- probes shared by several mechanisms ----


def probe_file(path: str) -> Probe:
    """The content of one file, or rc 1 when it does not exist."""
    if not SAFE_PATH.match(path):
        raise ValueError(f"unsafe path {path!r}")
    quoted = shlex.quote(path)
    return Probe(f"file:{path}", f"if [ -e {quoted} ]; then cat -- {quoted}; else exit 1; fi")


def probe_files(pattern: str) -> Probe:
    """Every file a glob matches, each preceded by a '==> path <==' line."""
    if not SAFE_GLOB.match(pattern):
        raise ValueError(f"unsafe glob {pattern!r}")
    return Probe(
        f"files:{pattern}",
        f'for f in {pattern}; do [ -f "$f" ] || continue; printf "==> %s <==\\n" "$f"; '
        'cat -- "$f"; printf "\\n"; done',
    )


def split_files(text: str) -> dict[str, str]:
    """Undo probe_files: path -> content."""
    files: dict[str, str] = {}
    current: str | None = None
    buffer: list[str] = []
    for line in text.split("\n"):
        match = re.fullmatch(r"==> (.*) <==", line)
        if match:
            if current is not None:
                files[current] = "\n".join(buffer)
            current, buffer = match.group(1), []
        elif current is not None:
            buffer.append(line)
    if current is not None:
        files[current] = "\n".join(buffer)
    return files


def probe_stat(pattern: str) -> Probe:
    """mode|owner|group|type|path for every path a glob matches."""
    if not SAFE_GLOB.match(pattern):
        raise ValueError(f"unsafe glob {pattern!r}")
    return Probe(
        f"stat:{pattern}",
        f"for f in {pattern}; do "
        '[ -e "$f" ] || [ -L "$f" ] || continue; stat -c \'%a|%U|%G|%F|%n\' -- "$f"; done',
    )


PACKAGES = Probe(
    "packages",
    "dpkg-query -W -f='${Package}\\t${db:Status-Abbrev}\\t${Version}\\n' 2>/dev/null",
)


def installed_packages(facts: Facts) -> dict[str, str]:
    """name -> version for packages dpkg reports installed (ii, hi, or half-configured)."""
    section = facts.get(PACKAGES.name)
    if section.rc != 0 or not section.text.strip():
        raise FactsError("dpkg-query printed nothing")
    installed: dict[str, str] = {}
    for line in section.text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1].strip()[1:2] in ("i", "U", "F", "W", "t"):
            installed[fields[0].split(":")[0]] = fields[2]
    return installed


def probe_unit(unit: str) -> Probe:
    """'<is-enabled> <is-active>' of one unit ('not-found' when unknown)."""
    if not SAFE_NAME.match(unit):
        raise ValueError(f"unsafe unit name {unit!r}")
    quoted = shlex.quote(unit)
    return Probe(
        f"unit:{unit}",
        f"e=$(systemctl is-enabled {quoted} 2>/dev/null); "
        f"a=$(systemctl is-active {quoted} 2>/dev/null); "
        'echo "${e:-not-found} ${a:-unknown}"',
    )


def unit_state(facts: Facts, unit: str) -> tuple[str, str]:
    fields = facts.text(f"unit:{unit}").split()
    if len(fields) != 2:
        raise FactsError(f"systemctl state of {unit} is unreadable")
    enabled = fields[0]
    if enabled in ("", "not-found"):
        enabled = "not-found"
    return enabled, fields[1]
