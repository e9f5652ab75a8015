"""Profile values are data, never code: hostile values for every parameter of
every control in the catalog, and for a profile's id and version.

Each value is either refused by the typed loader with the usual one-line
error naming the file and the field, or, where its type admits such text (a
banner may hold quotes, ``$HOME`` and backticks), the control's apply fragment
and its check probes are rendered and EXECUTED with bash in a throwaway
directory, proving that no marker file appears and that the value arrived
literally.

The sandbox: PATH holds only stub programs (``touch`` creates the PWNED
marker, whoever calls it), any other external command is caught by bash's
command_not_found_handle and logged with its arguments, and every gs_* helper
of the prelude is a function that logs its arguments (gs_install_content
keeps what it would have written). When the tests run as root, bash runs as
nobody, so not even a redirection can reach a host file.

The catalog is enumerated, so a new parameterised control is covered without
touching this file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hardening.apply import render_apply_script
from hardening.catalog import load_catalog, parse_catalog
from hardening.control import Control
from hardening.errors import ProfileError
from hardening.mechanisms import MECHANISMS
from hardening.mechanisms.parameters import ParamType, as_text
from hardening.mechanisms.quoting import QuotingError, unquoted_expansions
from hardening.profile import load_profile
from hardening.shell import PRELUDE

HOSTILE: dict[str, str] = {
    "command-substitution": "$(touch PWNED)",
    "backticks": "`touch PWNED`",
    "semicolon": ";touch PWNED",
    "ampersand": "x && touch PWNED",
    "pipe": "x|touch PWNED",
    "newline": "x\ntouch PWNED",
    "carriage-return": "x\rtouch PWNED",
    "line-separator": "x\u2028touch PWNED",
    "single-quote": "x'; touch PWNED; echo '",
    "double-quote": 'x"; touch PWNED; echo "',
    "backslash": "x\\",
    "backslash-quote": "x\\'; touch PWNED #",
    "home": "$HOME",
    "braced-home": "${HOME}",
    "ifs": "${IFS}touch${IFS}PWNED",
    "glob": "*",
    "option": "-rf",
    "dotdot": "/etc/../../tmp/PWNED",
    "escape-sequence": "x\x1b[2Jtouch PWNED",
    "nul": "x\x00touch PWNED",
    "heredoc-terminator": "x\nEOF\nEOF2\nGRUBPW\nNFT\nGOLDSMITH_EOF\ntouch PWNED",
    "heredoc-terminator-only": "EOF2",
    "ipv6-zone": "fe80::1%$(touch PWNED)",
    "unicode-digits": "\u0662\u0662",
}
# Values a parameter of this type could legally hold, for parameters that
# other parameters' controls need set (only_if: {param_set: ...}).
SAMPLE: dict[ParamType, Any] = {
    ParamType.pbkdf2: "grub.pbkdf2.sha512.10000." + "AB" * 32 + "." + "CD" * 32,
}
# Types whose values may hold shell syntax: any value of another type that the
# loader accepts is a failure of its type.
FREE_TEXT = {ParamType.text}


@dataclasses.dataclass(frozen=True)
class Case:
    control: Control
    name: str
    label: str
    value: Any

    @property
    def id(self) -> str:
        return f"{self.control.id}:{self.name}:{self.label}"


def cases() -> Iterator[Case]:
    for control in load_catalog().values():
        for name, spec in control.parameter_types.items():
            for label, text in HOSTILE.items():
                yield Case(control, name, label, text)
                if spec.type in (
                    ParamType.port_list,
                    ParamType.name_list,
                    ParamType.path_list,
                    ParamType.host_list,
                ):
                    yield Case(control, name, f"{label}-in-list", [*spec.default[:1], text])


CASES = list(cases())


def write_profile(tmp: Path, document: dict[str, Any]) -> Path:
    path = tmp / "hostile.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def assert_refused(path: Path, field: str) -> ProfileError:
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    error = caught.value
    assert error.field == field
    message = str(error)
    assert message.startswith(f"{path}: {field}: "), message
    assert "\n" not in message and "PWNED" not in message
    return error


# ---- the sandbox --------------------------------------------------------------------

_HELPERS = sorted(set(re.findall(r"^(gs_[a-z_]+)\(\)", PRELUDE, re.MULTILINE)))


@dataclasses.dataclass
class Sandbox:
    root: Path

    @property
    def marker(self) -> Path:
        return self.root / "PWNED"

    def calls(self) -> list[list[str]]:
        """Every logged call: a helper or an external command, with its arguments."""
        log = self.root / "log"
        if not log.exists():
            return []
        records = log.read_bytes().split(b"\x00\x1e\x00")
        return [
            [a.decode("utf-8", "surrogateescape") for a in r.split(b"\x00")] for r in records if r
        ]

    def written(self) -> dict[str, str]:
        """What gs_install_content would have installed, by target path."""
        out = {}
        for call in self.calls():
            if call[0] == "gs_install_content":
                out[call[1]] = (self.root / "written" / call[-1]).read_text()
        return out

    def holds_literally(self, text: str) -> bool:
        """``text`` reached a helper, a command or a written file unchanged."""
        if any(text in arg for call in self.calls() for arg in call[1:]):
            return True
        return any(text in content for content in self.written().values())

    def fail(self, command: str) -> None:
        """``command`` exits 2 (getent for a missing group, say) instead of 0."""
        stub = self.root / "bin" / command
        stub.write_text("#!/bin/sh\nexit 2\n")
        stub.chmod(0o755)

    def run(self, code: str) -> subprocess.CompletedProcess[str]:
        stubs = [
            f'{helper}() {{ gs_log {helper} "$@"; }}'
            for helper in _HELPERS
            if helper not in ("gs_install_content", "gs_reload_wanted", "gs_pkg_installed")
        ]
        prelude = "\n".join(
            [
                'GS_TMP="$GS_SANDBOX/gstmp"',
                # One record per call: arguments separated by NUL, records by NUL RS NUL.
                'gs_log() { printf \'%s\\0\' "$@" >>"$GS_SANDBOX/log"; '
                "printf '\\036\\0' >>\"$GS_SANDBOX/log\"; }",
                'command_not_found_handle() { gs_log "$@"; return 0; }',
                *stubs,
                "gs_reload_wanted() { return 1; }",
                "gs_pkg_installed() { return 0; }",
                "GS_WRITES=0",
                "gs_install_content() {",
                "  local content=''; IFS= read -r -d '' content || true",
                "  GS_WRITES=$((GS_WRITES + 1))",
                '  printf %s "$content" >"$GS_SANDBOX/written/$GS_WRITES"',
                '  gs_log gs_install_content "$@" "$GS_WRITES"',
                "}",
                "",
            ]
        )
        command = [BASH, "-uo", "pipefail", "-c", prelude + code]
        if os.geteuid() == 0 and SETPRIV:
            command = [SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        env = {
            "PATH": str(self.root / "bin"),
            "HOME": str(self.root / "home"),
            "GS_SANDBOX": str(self.root),
            "LC_ALL": "C.UTF-8",
        }
        return subprocess.run(
            command,
            cwd=self.root / "cwd",
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


BASH = shutil.which("bash") or "/bin/bash"
SETPRIV = shutil.which("setpriv")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    # Not under pytest's tmp_path: its parents are private to the user
    # running the tests, and bash may run as nobody.
    with tempfile.TemporaryDirectory(prefix="goldsmith-injection-") as name:
        root = Path(name)
        for sub in ("bin", "home", "cwd", "gstmp", "written"):
            (root / sub).mkdir()
        touch = root / "bin" / "touch"
        touch.write_text('#!/bin/sh\n: >"$GS_SANDBOX/PWNED"\n')
        touch.chmod(0o755)
        for path in (root, *root.iterdir()):
            if path.is_dir():
                path.chmod(0o777)
        yield Sandbox(root)


def assert_no_marker(box: Sandbox) -> None:
    found = [str(p) for p in box.root.rglob("*PWNED*")]
    assert not found, f"injected: {found}"
    assert not any(call[0] == "touch" for call in box.calls())


# ---- every parameter of every control --------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_parameter_is_refused_or_stays_data(
    case: Case, tmp_path: Path, sandbox: Sandbox
) -> None:
    control = case.control
    parameters = {case.name: case.value}
    condition = control.only_if
    if condition is not None and condition.param_set and condition.param_set != case.name:
        other = control.parameter_types[condition.param_set]
        parameters[condition.param_set] = SAMPLE[other.type]
    document = {"id": "hostile", "version": "1.0.0", "controls": [control.id]}
    path = write_profile(tmp_path, {**document, "parameters": parameters})
    spec = control.parameter_types[case.name]
    try:
        profile = load_profile(path)
    except ProfileError:
        assert_refused(path, f"parameters.{case.name}")
        return
    value = profile.parameters[case.name]
    literal = as_text(value)
    # Accepted: only a type made for free text may hold shell syntax.
    if spec.type not in FREE_TEXT:
        assert re.fullmatch(r"[A-Za-z0-9_.,:/+@%-]*", literal), f"{spec.type} accepted {literal!r}"
    (selected,) = profile.controls
    mechanism = MECHANISMS[control.mechanism]
    parsed = mechanism.parse(selected.params)

    # The apply fragment, as the apply script holds it, run for real.
    script = render_apply_script(profile)
    subprocess.run([BASH, "-n"], input=script, text=True, check=True)
    fragment = mechanism.render(parsed)
    assert fragment.rstrip() in script
    done = sandbox.run(fragment)
    assert done.returncode == 0, done.stderr
    assert_no_marker(sandbox)
    if fragment.strip():
        items = value if isinstance(value, list) else [value]
        for item in items:
            assert sandbox.holds_literally(str(item)), (fragment, sandbox.calls())

    # The check's probes, run the way gather runs them.
    for probe in mechanism.probes(parsed):
        sandbox.run(f"( {probe.command}\n) </dev/null")
        assert_no_marker(sandbox)

    # In every piece of code the control carries, the variable holds the value.
    for code in (fragment, *(p.command for p in mechanism.probes(parsed))):
        if f"{case.name}=" not in code:
            continue
        assignments = code[: code.index("\n", code.index(f"{case.name}="))]
        shown = subprocess.run(
            [BASH, "-c", f'{assignments}\nprintf %s "${{{case.name}}}"'],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/nonexistent"},
        )
        assert shown.stdout == literal


def test_every_parameterised_control_and_parameter_is_covered() -> None:
    declared = {(c.id, name) for c in load_catalog().values() for name in c.parameter_types}
    assert declared, "the catalog declares no parameters"
    assert {(c.control.id, c.name) for c in CASES} == declared
    # Script controls with parameters are the riskiest; they must be among them.
    assert {"su-restricted", "banner-motd", "boot-grub-password"} <= {c for c, _ in declared}


@pytest.mark.parametrize("value", ["$HOME", 'It\'s "quoted" `id` $(id) \\ ; | &', "${HOME}"])
def test_banner_is_written_literally(value: str, tmp_path: Path, sandbox: Sandbox) -> None:
    path = write_profile(
        tmp_path,
        {
            "id": "b",
            "version": "1",
            "controls": ["banner-motd", "banner-issue", "banner-issue-net"],
            "parameters": {"banner_text": value},
        },
    )
    profile = load_profile(path)
    mechanism = MECHANISMS["script"]
    for selected in profile.controls:
        done = sandbox.run(mechanism.render(mechanism.parse(selected.params)))
        assert done.returncode == 0, done.stderr
    assert sandbox.written() == {
        "/etc/motd": value + "\n",
        "/etc/issue": value + "\n",
        "/etc/issue.net": value + "\n",
    }
    assert_no_marker(sandbox)


def test_su_group_and_grub_values_reach_commands_as_single_arguments(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    pbkdf2 = SAMPLE[ParamType.pbkdf2]
    path = write_profile(
        tmp_path,
        {
            "id": "g",
            "version": "1",
            "controls": ["su-restricted", "boot-grub-password"],
            "parameters": {
                "su_group": "wheel-2",
                "grub_superuser": "boot_admin",
                "grub_password_pbkdf2": pbkdf2,
            },
        },
    )
    profile = load_profile(path)
    mechanism = MECHANISMS["script"]
    sandbox.fail("getent")  # the group does not exist yet
    for selected in profile.controls:
        done = sandbox.run(mechanism.render(mechanism.parse(selected.params)))
        assert done.returncode == 0, done.stderr
    calls = sandbox.calls()
    assert ["groupadd", "wheel-2"] in calls
    (line,) = [c for c in calls if c[0] == "gs_set_line" and c[1] == "/etc/pam.d/su"]
    assert line[3] == "auth       required   pam_wheel.so use_uid group=wheel-2"
    hook = sandbox.written()["/etc/grub.d/01_goldsmith_password"]
    assert hook == (
        "#!/bin/sh\ncat <<'EOF2'\nset superusers=\"boot_admin\"\n"
        f"password_pbkdf2 boot_admin {pbkdf2}\nEOF2\n"
    )


# ---- the profile's own identity --------------------------------------------------------


@pytest.mark.parametrize("field", ["id", "version"])
@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_hostile_id_or_version_is_refused(field: str, label: str, tmp_path: Path) -> None:
    document: dict[str, Any] = {"id": "p", "version": "1.0.0", "controls": ["kernel-aslr"]}
    document[field] = HOSTILE[label]
    assert_refused(write_profile(tmp_path, document), field)


def test_apply_header_and_comments_stay_on_their_line(tmp_path: Path) -> None:
    path = write_profile(
        tmp_path,
        {
            "id": "p",
            "version": "1.0.0+build.7",
            "extends": "baseline",
            "waivers": [{"control": "kernel-aslr", "reason": "a\x0btouch PWNED\x1b[2J"}],
        },
    )
    script = render_apply_script(load_profile(path))
    assert script.splitlines()[0].startswith("# profile p 1.0.0+build.7 (sha256:")
    (comment,) = [line for line in script.splitlines() if "kernel-aslr: waived" in line]
    assert comment.startswith("# ")


# ---- the catalog: defaults are checked, and careless code still gets data -------------


CONTROL = """controls:
  - id: custom
    title: t
    area: a
    rationale: r
    no_reference_reason: test
    mechanism: script
    parameters:
      {name}: {{type: {type}, default: {default}}}
    params:
      expected: e
      check: "echo ${{{name}}}"
      apply: |
        printf '%s\\n' ${{{name}}} >"$GS_TMP/out"
        gs_install_content /etc/custom 0644 <"$GS_TMP/out"
"""


@pytest.mark.parametrize(
    ("type_", "name"),
    [
        ("name", "group"),
        ("port", "port"),
        ("path", "where"),
        ("size", "size"),
        ("pbkdf2", "hash"),
        ("text", "banner"),
        ("host_list", "hosts"),
    ],
)
@pytest.mark.parametrize("label", ["command-substitution", "newline", "double-quote"])
def test_hostile_catalog_default_is_refused_at_catalog_load(
    type_: str, name: str, label: str
) -> None:
    if type_ == "text" and label != "newline":
        pytest.skip("free text may hold this; see the execution tests")
    default = yaml.safe_dump(HOSTILE[label], default_style='"').strip()
    with pytest.raises(ProfileError) as caught:
        parse_catalog([("c.yaml", CONTROL.format(name=name, type=type_, default=default))])
    assert str(caught.value).startswith(f"c.yaml: controls[0](custom).parameters.{name}.default: ")


@pytest.mark.parametrize(
    "declaration",
    [
        "{type: shell, default: x}",
        "{type: int, default: 5, max: 3}",
        "{type: name, min: 1, default: x}",
        "{type: name}",
        "{type: name, default: x, quote: false}",
    ],
)
def test_bad_declarations_are_refused(declaration: str) -> None:
    text = CONTROL.format(name="p", type="name", default="x").replace(
        "{type: name, default: x}", declaration
    )
    with pytest.raises(ProfileError, match=r"^c\.yaml: controls\[0\]\(custom\)\.parameters\.p"):
        parse_catalog([("c.yaml", text)])


@pytest.mark.parametrize("bad", ["a;b", "PATH", "x y", "$(x)"])
def test_parameter_names_are_bash_variable_names(bad: str) -> None:
    text = CONTROL.format(name="p", type="name", default="x").replace(
        "      p: {type: name", f"      {yaml.safe_dump(bad).splitlines()[0]}: {{type: name"
    )
    with pytest.raises(ProfileError, match="parameters"):
        parse_catalog([("c.yaml", text)])


def quoted_control(name: str) -> str:
    """CONTROL with every expansion quoted, as the loader wants it."""
    text = CONTROL.format(name=name, type="text", default="x")
    text = text.replace(f'check: "echo ${{{name}}}"', f"check: 'echo \"${{{name}}}\"'")
    return text.replace(f"'%s\\n' ${{{name}}}", f"'%s\\n' \"${{{name}}}\"")


@pytest.mark.parametrize("label", ["command-substitution", "backticks", "single-quote", "home"])
def test_even_an_unquoted_expansion_in_catalog_code_runs_nothing(
    label: str, sandbox: Sandbox
) -> None:
    # A careless control: ${banner} unquoted. Loading refuses it (below), so
    # it is made by hand here: splitting and globbing may mangle the text, but
    # the result of an expansion is never run.
    control = parse_catalog([("c.yaml", quoted_control("banner"))])["custom"]
    careless = {
        **control.params,
        "check": "echo ${banner}",
        "apply": control.params["apply"].replace('"${banner}"', "${banner}"),
    }
    control = dataclasses.replace(control, params=careless)
    mechanism = MECHANISMS["script"]
    parsed = mechanism.parse(control.resolve_params({"banner": HOSTILE[label]}))
    assert sandbox.run(mechanism.render(parsed)).returncode == 0
    for probe in mechanism.probes(parsed):
        sandbox.run(f"( {probe.command}\n) </dev/null")
    assert_no_marker(sandbox)


def test_values_are_checked_again_where_they_meet_the_mechanism() -> None:
    # Whoever builds the values (a future loader, a test), resolving a
    # control checks them against their types once more.
    control = load_catalog()["su-restricted"]
    from hardening.errors import ParamError

    with pytest.raises(ParamError, match="su_group"):
        control.resolve_params({"su_group": "$(touch PWNED)"})


# ---- every expansion of a parameter in catalog code is quoted ---------------------------
# The model lives in hardening.mechanisms.quoting; the catalog loader refuses
# what it finds (and so does a profile defining its own controls).


def unquoted(code: str, names: set[str]) -> list[str]:
    return [e.text for e in unquoted_expansions(code, names)]


def test_the_quoting_model_finds_unquoted_expansions() -> None:
    names = {"g"}
    assert unquoted('a "${g}" "$(b "$g")"\nc <<X\n${g}\nX\n', names) == []
    assert unquoted("echo '${g}' # ${g}\n", names) == []
    assert len(unquoted('a ${g}\nb "$(c ${g})"\nd=$g\n', names)) == 3


@pytest.mark.parametrize(
    "code",
    [
        'x=$(( g + 1 ))\necho "$(( $g << 2 ))"\n',
        "cat <<-'EOF'\n\t$g\n\tEOF\n",
        "echo $'it\\'s' \"$g\"\n",
        'echo "$(printf %s "$g")" "`printf %s "$g"`"\n',
        "echo \\$g $gx ${gx} $G\n",
    ],
)
def test_the_quoting_model_knows_quoted_forms(code: str) -> None:
    assert unquoted(code, {"g"}) == []


@pytest.mark.parametrize(
    "code", ['echo "`echo $g`"\n', "echo `echo $g`\n", "f ${g:-x}\n", "[ -n $g ]\n"]
)
def test_the_quoting_model_finds_unquoted_forms(code: str) -> None:
    assert len(unquoted(code, {"g"})) == 1


@pytest.mark.parametrize("code", ["echo 'x\n", 'echo "x\n', "cat <<EOF\nx\n", "echo $(x\n"])
def test_the_quoting_model_refuses_code_it_cannot_follow(code: str) -> None:
    with pytest.raises(QuotingError):
        unquoted_expansions(code, {"g"})


@pytest.mark.parametrize(
    "control",
    [c for c in load_catalog().values() if MECHANISMS[c.mechanism].code_keys and c.parameters],
    ids=lambda c: c.id,
)
def test_catalog_code_quotes_every_parameter(control: Control) -> None:
    for key in sorted(MECHANISMS[control.mechanism].code_keys):
        code = control.params.get(key, "")
        assert unquoted(code + "\n", set(control.parameter_types)) == [], key


def test_an_unquoted_expansion_is_refused_at_catalog_load() -> None:
    text = quoted_control("banner").replace("'%s\\n' \"${banner}\"", "'%s\\n' ${banner}")
    assert text != quoted_control("banner")
    with pytest.raises(ProfileError) as caught:
        parse_catalog([("c.yaml", text)])
    message = str(caught.value)
    assert message.startswith("c.yaml: controls[0](custom).params.apply: ")
    assert "line 1: $banner unquoted" in message and "\n" not in message
