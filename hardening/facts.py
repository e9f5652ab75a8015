"""Evidence from a host: named probes (shell commands) run in one script whose
output is cut into sections by a marker no file content can forge.

A mechanism says which probes it needs; gather runs the union once. Facts maps
each probe name to what it printed and its exit status.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
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
    """One section of evidence: ``name`` identifies it, ``command`` produces it.

    A batched probe lists the ``items`` one use of it needs: probes of the same
    name are merged, their items joined in first-use order and spliced,
    shell-quoted, where the command says ``{items}``, so one command answers
    for every control (one systemctl call for all units, say).

    An ``isolated`` probe runs in a subshell, which the catalog's check scripts
    need (they may exit or set variables); goldsmith's own probes run in a
    brace group and cost no fork.
    """

    name: str
    command: str
    items: tuple[str, ...] = ()
    isolated: bool = True


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


def render_gather_script(
    probes: Iterable[Probe], marker: str | None = None, *, lanes: int = 2
) -> tuple[str, str]:
    """The script printing every probe's section, and the marker it uses.

    Sections are independent and self-delimited, so the probes are dealt
    round-robin into ``lanes`` background jobs whose outputs are printed once
    all have finished: on a guest with several vCPUs the slow probes (file
    system walks, package queries, catalog scripts) overlap. Two lanes, one
    per vCPU of the validation VM: the check phase is CPU-bound, and in an
    emulated guest more lanes than vCPUs only add switching (a cis-level1
    gather, lanes alternated in one boot, cold and warm: 2 lanes beat 4 in
    each of six pairs, and 8 was slowest).
    """
    mark = marker or f"@@goldsmith-{secrets.token_hex(8)}@@"
    lines = [
        "export LC_ALL=C LANG=C",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "shopt -s nullglob",
        f"GS_MARK={shlex.quote(mark)}",
    ]
    sections = [_render_section(probe) for probe in merge_probes(probes)]
    if lanes <= 1 or len(sections) < 2:
        lines.extend(sections)
        return "\n".join(lines) + "\n", mark
    lines += [
        "GS_LANES=$(mktemp -d) || exit 1",
        """trap 'rm -rf -- "$GS_LANES"' EXIT""",
    ]
    used = min(lanes, len(sections))
    for lane in range(used):
        lines.append("(")
        lines.extend(sections[lane::used])
        lines.append(f') > "$GS_LANES/{lane}" &')
    lines += ["wait", "cat " + " ".join(f'"$GS_LANES/{lane}"' for lane in range(used))]
    return "\n".join(lines) + "\n", mark


def _render_section(probe: Probe) -> str:
    command = probe.command
    if probe.items:
        command = command.replace("{items}", " ".join(shlex.quote(i) for i in probe.items))
        # Globs are spliced unquoted so the shell expands them; probe_files
        # and probe_stat admit only SAFE_GLOB's plain alphabet.
        if "{globs}" in command:
            unsafe = [i for i in probe.items if not SAFE_GLOB.match(i)]
            if unsafe:
                raise ValueError(f"unsafe glob {unsafe[0]!r}")
            command = command.replace("{globs}", " ".join(probe.items))
    body = f"( {command}\n) </dev/null" if probe.isolated else f"{{ {command}\n}} </dev/null"
    return "\n".join(
        [
            f'printf "%s begin %s\\n" "$GS_MARK" {shlex.quote(probe.name)}',
            body,
            'printf "\\n%s end %d\\n" "$GS_MARK" "$?"',
        ]
    )


def merge_probes(probes: Iterable[Probe]) -> list[Probe]:
    """One probe per name, in first-use order; a batched probe carries the
    union of the items every use asked for."""
    merged: dict[str, Probe] = {}
    for probe in probes:
        known = merged.get(probe.name)
        if known is None:
            merged[probe.name] = probe
        elif probe.items:
            extra = tuple(i for i in probe.items if i not in known.items)
            if extra:
                merged[probe.name] = dataclasses.replace(known, items=known.items + extra)
    return list(merged.values())


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
    return Probe(
        f"file:{path}", f"if [ -e {quoted} ]; then cat -- {quoted}; else false; fi", isolated=False
    )


FILES = "files"
# Builtins only (mapfile, printf): no process per file.
_FILES_COMMAND = (
    'for f in {globs}; do [ -f "$f" ] || continue; printf "==> %s <==\\n" "$f"; '
    'mapfile -t GS_LINES <"$f"; [ ${#GS_LINES[@]} = 0 ] || printf "%s\\n" "${GS_LINES[@]}"; '
    'printf "\\n"; done'
)


def probe_files(pattern: str) -> Probe:
    """Every file a glob matches, each preceded by a '==> path <==' line; one
    section for every glob of every control (read it with file_contents)."""
    if not SAFE_GLOB.match(pattern):
        raise ValueError(f"unsafe glob {pattern!r}")
    return Probe(FILES, _FILES_COMMAND, items=(pattern,), isolated=False)


def glob_match(pattern: str, path: str) -> bool:
    """Whether the shell would have expanded ``pattern`` to ``path``: wildcards
    stay within one path component and do not match a leading dot."""
    parts, names = pattern.split("/"), path.split("/")
    if len(parts) != len(names):
        return False
    for part, name in zip(parts, names, strict=True):
        if name.startswith(".") and not part.startswith("."):
            return False
        if not fnmatch.fnmatchcase(name, part):
            return False
    return True


def file_contents(facts: Facts, pattern: str) -> dict[str, str]:
    """path -> content of the files ``pattern`` matched, in the shell's order."""
    files = split_files(facts.text(FILES))
    return {path: text for path, text in files.items() if glob_match(pattern, path)}


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


STAT = "stat"


def probe_stat(pattern: str) -> Probe:
    """mode|owner|group|type|path for every path a glob matches: one stat call
    for the globs of every control (read it with stat_lines). A symlink is
    judged by the file it resolves to (stat -L), as the apply script's chmod
    and chown change that file: a symlink's own mode is always 0777 and a
    link to a writable file elsewhere must not pass for its root-owned link."""
    if not SAFE_GLOB.match(pattern):
        raise ValueError(f"unsafe glob {pattern!r}")
    return Probe(
        STAT, "stat -L -c '%a|%U|%G|%F|%n' -- {globs} 2>/dev/null", items=(pattern,), isolated=False
    )


def stat_lines(facts: Facts, pattern: str) -> list[str]:
    """The stat lines of the paths ``pattern`` matched."""
    out = []
    for line in facts.text(STAT).splitlines():
        path = line.split("|", 4)[-1]
        if glob_match(pattern, path):
            out.append(line)
    return out


PACKAGES = Probe(
    "packages",
    "dpkg-query -W -f='${Package}\\t${db:Status-Abbrev}\\t${Version}\\n' 2>/dev/null",
    isolated=False,
)


OS_RELEASE = Probe("os-release", "cat /etc/os-release 2>/dev/null || true", isolated=False)


def guest_release(facts: Facts) -> str | None:
    """The Debian major release the evidence came from ("12"), or None when it
    names none (testing, sid) or was not gathered."""
    section = facts.sections.get(OS_RELEASE.name)
    if section is None:
        return None
    for line in section.text.splitlines():
        match = re.fullmatch(r'VERSION_ID="?([0-9]+)[^"]*"?', line.strip())
        if match:
            return match.group(1)
    return None


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


UNITS = "units"
_UNITS_COMMAND = (
    "systemctl list-unit-files --no-legend --no-pager {items} 2>&1; echo '--'; "
    "systemctl list-units --all --plain --no-legend --no-pager {items} 2>&1"
)


def probe_unit(unit: str) -> Probe:
    """Every unit's file state (is-enabled's words: enabled, static, masked ...)
    and activity, two systemctl calls for all units together."""
    if not SAFE_NAME.match(unit):
        raise ValueError(f"unsafe unit name {unit!r}")
    return Probe(UNITS, _UNITS_COMMAND, items=(unit,), isolated=False)


def unit_state(facts: Facts, unit: str) -> tuple[str, str]:
    """(file state, active state) of ``unit``: ('not-found', 'inactive') when
    systemd knows no such unit."""
    section = facts.get(UNITS)
    files, sep, loaded = section.text.partition("\n--\n")
    if not sep:
        raise FactsError(f"systemctl state of {unit} is unreadable: {section.text.strip()[:120]}")
    enabled, active = "not-found", "inactive"
    for line in files.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == unit:
            enabled = fields[1]
    for line in loaded.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == unit:
            active = fields[2]
    return enabled, active
