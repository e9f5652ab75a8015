"""A profile's own controls: defined under ``controls``, named
``<namespace>.<id>``, their code read strictly from files beside the profile,
part of the digest, refused when a parameter is expanded unquoted, and shown
like shipped controls (apply script, checks, references, JUnit, the CLI)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from builder.cli import cli
from hardening.apply import render_apply_script
from hardening.check import evaluate
from hardening.custom import MAX_CODE_FILE
from hardening.errors import ProfileError
from hardening.facts import PACKAGES, Facts, Section
from hardening.mechanisms import MECHANISMS
from hardening.profile import Profile, SelectedControl, load_profile
from hardening.results import Status
from validate.report import render_junit
from validate.results import ValidationRun

ROOT = Path(__file__).resolve().parents[3]
WEBSERVER = ROOT / "examples" / "webserver" / "profile.yaml"
BASH = shutil.which("bash") or "/bin/bash"

CHECK = """\
# acme.nginx-tokens: nginx names no version.
if ! config=$(nginx -T 2>/dev/null); then echo "nginx -T failed"; exit 1; fi
printf '%s\\n' "$config" | grep -E "^[[:space:]]*server_tokens[[:space:]]+${tokens};"
"""
APPLY = """\
printf 'server_tokens %s;\\n' "${tokens}" >"$GS_TMP/tokens"
gs_install_content /etc/nginx/conf.d/acme-tokens.conf 0644 <"$GS_TMP/tokens"
"""


def script_control(**overrides: Any) -> dict[str, Any]:
    control: dict[str, Any] = {
        "id": "acme.nginx-tokens",
        "title": "nginx does not reveal its version",
        "area": "web",
        "rationale": "A version tells a scanner what to try.",
        "references": {"acme": ["WEB-7"]},
        "only_if": {"installed": "nginx-common"},
        "mechanism": "script",
        "parameters": {"tokens": {"type": "name", "default": "off"}},
        "params": {
            "expected": "server_tokens off",
            "check": {"file": "controls/tokens.check.sh"},
            "apply": {"file": "controls/tokens.apply.sh"},
        },
    }
    control.update(overrides)
    return control


def sysctl_control() -> dict[str, Any]:
    return {
        "id": "acme.no-magic-sysrq",
        "title": "The magic SysRq key is off",
        "area": "kernel",
        "rationale": "A console keystroke should not reboot a server.",
        "severity": "low",
        "cis": ["1.5.3"],
        "cis_level": 2,
        "mechanism": "sysctl",
        "params": {"settings": [{"key": "kernel.sysrq", "value": 0}]},
    }


def write_profile(folder: Path, *controls: Any, name: str = "profile.yaml", **rest: Any) -> Path:
    document: dict[str, Any] = {"id": "acme-web", "version": "1.0.0", "extends": "baseline"}
    document.update(rest)
    if controls:
        document["controls"] = list(controls)
    path = folder / name
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "controls").mkdir()
    (tmp_path / "controls" / "tokens.check.sh").write_text(CHECK)
    (tmp_path / "controls" / "tokens.apply.sh").write_text(APPLY)
    return tmp_path


def selected(profile: Profile, ident: str) -> SelectedControl:
    (found,) = [sc for sc in profile.controls if sc.id == ident]
    return found


def refused(path: Path) -> ProfileError:
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return caught.value


# ---- parsing and selection -------------------------------------------------------------


def test_a_profile_defines_selects_and_parameterises_its_controls(folder: Path) -> None:
    path = write_profile(
        folder,
        "kmod-hfs",
        script_control(),
        sysctl_control(),
        parameters={"tokens": "off"},
    )
    profile = load_profile(path)
    baseline = [sc.id for sc in load_profile("baseline").controls]
    ids = [sc.id for sc in profile.controls]
    # Shipped controls first, in catalog order; then the profile's, as defined.
    assert ids[-2:] == ["acme.nginx-tokens", "acme.no-magic-sysrq"]
    assert set(baseline) | {"kmod-hfs"} == set(ids[:-2])
    tokens = selected(profile, "acme.nginx-tokens")
    control = tokens.control
    assert control.custom and control.source == str(path)
    assert control.params["check"] == CHECK and control.params["apply"] == APPLY
    assert [(f.key, f.path) for f in control.files] == [
        ("check", "controls/tokens.check.sh"),
        ("apply", "controls/tokens.apply.sh"),
    ]
    assert tokens.params["variables"] == {"tokens": "off"}
    assert profile.parameters["tokens"] == "off"
    sysrq = selected(profile, "acme.no-magic-sysrq")
    assert sysrq.control.references.strings() == ("CIS Debian 12 v1.1.0 1.5.3 (L2)",)
    assert sysrq.control.files == ()
    document = profile.canonical()
    (entry,) = [c for c in document["controls"] if c["id"] == "acme.nginx-tokens"]
    assert entry["definition"]["files"][0]["path"] == "controls/tokens.check.sh"
    assert entry["definition"]["parameters"] == {"tokens": {"type": "name", "default": "off"}}
    assert not any("definition" in c for c in document["controls"] if "." not in c["id"])


def test_inline_code_is_allowed(folder: Path) -> None:
    inline = script_control(params={"expected": "e", "check": CHECK, "apply": APPLY})
    profile = load_profile(write_profile(folder, inline))
    control = selected(profile, "acme.nginx-tokens").control
    assert control.params["check"] == CHECK and control.files == ()


def test_shipped_profiles_are_unchanged_by_the_feature() -> None:
    for sc in load_profile("cis-level2-server").controls:
        assert not sc.control.custom and "." not in sc.id


def test_controls_are_inherited_and_can_be_waived_excluded_or_tuned(folder: Path) -> None:
    parent = write_profile(folder, script_control(), sysctl_control(), name="parent.yaml")
    (folder / "child").mkdir()
    child = write_profile(
        folder / "child",
        id="acme-web-eu",
        extends="../parent.yaml",
        exclude=["acme.no-magic-sysrq"],
        parameters={"tokens": "build"},
        waivers=[{"control": "acme.nginx-tokens", "reason": "the CDN strips the header"}],
    )
    profile = load_profile(child)
    ids = [sc.id for sc in profile.controls]
    assert "acme.nginx-tokens" in ids and "acme.no-magic-sysrq" not in ids
    tokens = selected(profile, "acme.nginx-tokens")
    assert tokens.waiver is not None and tokens.params["variables"] == {"tokens": "build"}
    # Files stay relative to the profile that names them.
    assert Path(tokens.control.source).resolve() == parent.resolve()
    assert profile.digest != load_profile(parent).digest


# ---- namespaces ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ident", "fragment"),
    [
        ("kernel-aslr", "kernel-aslr is a shipped control"),
        ("nginx-tokens", "ids without a namespace are goldsmith's own"),
        (".nginx-tokens", "<namespace>.<id>"),
        ("Acme.nginx-tokens", "<namespace>.<id>"),
        ("1acme.nginx-tokens", "<namespace>.<id>"),
        ("acme_co.nginx-tokens", "<namespace>.<id>"),
        ("acme.", "<namespace>.<id>"),
        ("acme.nginx.tokens", "<namespace>.<id>"),
        ("acme.Tokens", "<namespace>.<id>"),
        ("goldsmith.nginx-tokens", "the namespace goldsmith is reserved"),
        ("acme." + "x" * 100, "<namespace>.<id>"),
        (7, "<namespace>.<id>"),
    ],
)
def test_ids_must_be_namespaced_and_never_shadow_shipped_ones(
    folder: Path, ident: Any, fragment: str
) -> None:
    error = refused(write_profile(folder, script_control(id=ident)))
    assert error.field == "controls[0].id"
    assert fragment in error.expected


def test_duplicate_ids_are_refused_in_one_profile_and_across_extends(folder: Path) -> None:
    path = write_profile(folder, script_control(), script_control())
    error = refused(path)
    assert error.field == "controls[1](acme.nginx-tokens).id"
    assert f"also defined in {path}" in error.expected
    parent = write_profile(folder, script_control(), name="parent.yaml")
    child = write_profile(folder, script_control(), name="child.yaml", extends="parent.yaml")
    error = refused(child)
    assert f"also defined in {parent}" in error.expected


def test_a_parameter_must_agree_with_the_catalog_s_declaration(folder: Path) -> None:
    clash = script_control(parameters={"tokens": {"type": "name", "default": "off"}})
    clash["parameters"]["su_group"] = {"type": "text", "default": "x"}
    error = refused(write_profile(folder, clash))
    assert error.field == "controls[0](acme.nginx-tokens).parameters.su_group"
    assert "the same type and default as in su-restricted" in error.expected


@pytest.mark.parametrize(
    ("references", "field"),
    [
        (["WEB-7"], "references"),
        ({"acme": []}, "references.acme"),
        ({"acme": ["WEB 7"]}, "references.acme"),
        ({"cis": ["1.1"]}, "references.cis"),
        ({"a b": ["x"]}, "references"),
    ],
)
def test_references_have_a_shape(folder: Path, references: Any, field: str) -> None:
    error = refused(write_profile(folder, script_control(references=references)))
    assert error.field == f"controls[0](acme.nginx-tokens).{field}"


@pytest.mark.parametrize(
    "anssi", [["R0"], ["R81"], ["r12"], ["R12", "R12"], ["BP-028 R12"], "R1 R2"]
)
def test_anssi_references_are_bp028_recommendations(folder: Path, anssi: Any) -> None:
    error = refused(write_profile(folder, script_control(anssi=anssi)))
    assert error.field == "controls[0](acme.nginx-tokens).anssi"
    assert error.expected == "ANSSI BP-028 v2.0 recommendations, each once, like [R9, R12]"
    assert "\n" not in str(error)


def test_anssi_references_are_shown_and_count_as_references(folder: Path) -> None:
    control = script_control(anssi=["R12", "R80"])
    del control["references"]
    (sc,) = [c for c in load_profile(write_profile(folder, control)).controls if c.control.custom]
    assert sc.control.references.anssi == ("R12", "R80")
    assert sc.control.references.strings()[-2:] == (
        "ANSSI BP-028 v2.0 R12",
        "ANSSI BP-028 v2.0 R80",
    )
    error = refused(write_profile(folder, script_control(references={"anssi": ["R1"]})))
    assert error.field == "controls[0](acme.nginx-tokens).references.anssi"


def test_a_control_without_references_needs_a_reason(folder: Path) -> None:
    control = script_control()
    del control["references"]
    error = refused(write_profile(folder, control))
    assert error.field == "controls[0](acme.nginx-tokens).no_reference_reason"


# ---- files beside the profile ------------------------------------------------------------

FILE_FIELD = "controls[0](acme.nginx-tokens).params.check.file"


def with_check(folder: Path, name: str) -> Path:
    control = script_control()
    control["params"]["check"] = {"file": name}
    return write_profile(folder, control)


def test_a_missing_file_is_refused(folder: Path) -> None:
    error = refused(with_check(folder, "controls/nope.sh"))
    assert error.field == FILE_FIELD and "an existing file" in error.expected


def test_a_symlinked_file_is_refused(folder: Path) -> None:
    (folder / "controls" / "link.sh").symlink_to(folder / "controls" / "tokens.check.sh")
    error = refused(with_check(folder, "controls/link.sh"))
    assert error.field == FILE_FIELD and "not a symlink" in error.expected


def test_a_symlinked_folder_is_refused(folder: Path) -> None:
    (folder / "linked").symlink_to(folder / "controls")
    error = refused(with_check(folder, "linked/tokens.check.sh"))
    assert "a folder, not a symlink" in error.expected


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../outside.sh", "no .."),
        ("controls/../../outside.sh", "no .."),
        ("/etc/passwd", "not an absolute path"),
        ("controls/x y.sh", "letters, digits"),
        ("controls//tokens.check.sh", "letters, digits"),
        ("", "a path relative"),
    ],
)
def test_paths_stay_inside_the_profile_s_folder(folder: Path, name: str, fragment: str) -> None:
    (folder.parent / "outside.sh").write_text("true\n")
    error = refused(with_check(folder, name))
    assert error.field == FILE_FIELD and fragment in error.expected


def test_a_fifo_is_refused_without_hanging(folder: Path) -> None:
    os.mkfifo(folder / "controls" / "fifo.sh")
    error = refused(with_check(folder, "controls/fifo.sh"))
    assert "a regular file" in error.expected


def test_a_folder_is_refused(folder: Path) -> None:
    error = refused(with_check(folder, "controls"))
    assert "a regular file" in error.expected


def test_non_utf8_is_refused(folder: Path) -> None:
    (folder / "controls" / "latin1.sh").write_bytes(b"echo caf\xe9\n")
    error = refused(with_check(folder, "controls/latin1.sh"))
    assert "not UTF-8" in error.expected


def test_a_file_too_big_is_refused(folder: Path) -> None:
    (folder / "controls" / "big.sh").write_text("#" * MAX_CODE_FILE + "\ntrue\n")
    error = refused(with_check(folder, "controls/big.sh"))
    assert f"at most {MAX_CODE_FILE} bytes" in error.expected


@pytest.mark.parametrize("data", [b"true\r\necho x\r\n", b"echo \x1b[2J\n", b"echo \x00\n"])
def test_control_characters_in_code_are_refused(folder: Path, data: bytes) -> None:
    (folder / "controls" / "ctl.sh").write_bytes(data)
    error = refused(with_check(folder, "controls/ctl.sh"))
    assert error.field == FILE_FIELD
    assert error.expected.startswith("controls/ctl.sh: bash without control characters")


def test_file_references_only_for_code(folder: Path) -> None:
    control = script_control()
    control["params"]["expected"] = {"file": "controls/tokens.check.sh"}
    error = refused(write_profile(folder, control))
    assert error.field == "controls[0](acme.nginx-tokens).params.expected"
    control = script_control()
    control["params"]["check"] = {"file": "controls/tokens.check.sh", "mode": "0755"}
    error = refused(write_profile(folder, control))
    assert error.field == "controls[0](acme.nginx-tokens).params.check"


# ---- the digest ----------------------------------------------------------------------


def test_the_digest_follows_the_script_bytes(folder: Path) -> None:
    path = write_profile(folder, script_control())
    before = load_profile(path).digest
    assert load_profile(path).digest == before
    check = folder / "controls" / "tokens.check.sh"
    check.write_text(CHECK + "# one more line\n")
    changed = load_profile(path).digest
    assert changed != before
    check.write_text(CHECK)
    assert load_profile(path).digest == before
    (folder / "controls" / "tokens.apply.sh").write_text(APPLY.replace("0644", "0640"))
    assert load_profile(path).digest not in (before, changed)


def test_the_digest_follows_what_only_a_profile_s_control_records(folder: Path) -> None:
    path = write_profile(folder, script_control())
    before = load_profile(path).digest
    write_profile(folder, script_control(rationale="Another reason."))
    assert load_profile(path).digest != before
    write_profile(folder, script_control(only_if={"installed": "nginx-light"}))
    assert load_profile(path).digest != before


def test_the_digest_does_not_depend_on_where_the_profile_is(folder: Path) -> None:
    path = write_profile(folder, script_control())
    with tempfile.TemporaryDirectory() as elsewhere:
        copy = Path(elsewhere) / "checkout"
        shutil.copytree(folder, copy)
        assert load_profile(copy / "profile.yaml").digest == load_profile(path).digest


# ---- quoting, checked at load ----------------------------------------------------------


def test_an_unquoted_expansion_in_a_file_is_refused_at_load(folder: Path) -> None:
    (folder / "controls" / "tokens.apply.sh").write_text(
        APPLY + "echo server_tokens $tokens >>/tmp/log\n"
    )
    error = refused(write_profile(folder, script_control()))
    assert error.field == "controls[0](acme.nginx-tokens).params.apply.file"
    assert error.expected.startswith("controls/tokens.apply.sh: every parameter expanded")
    assert "line 3: $tokens unquoted" in error.expected


def test_an_unquoted_expansion_inline_is_refused_at_load(folder: Path) -> None:
    inline = script_control(
        params={"expected": "e", "check": "grep -q ${tokens} /etc/nginx/nginx.conf"}
    )
    error = refused(write_profile(folder, inline))
    assert error.field == "controls[0](acme.nginx-tokens).params.check"
    assert "$tokens unquoted" in error.expected


def test_code_whose_quoting_never_ends_is_refused(folder: Path) -> None:
    (folder / "controls" / "tokens.check.sh").write_text('echo "${tokens}\n')
    error = refused(write_profile(folder, script_control()))
    assert "bash whose quoting ends" in error.expected


# ---- apply and check ------------------------------------------------------------------


def run_bash(code: str, path: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, "-c", code],
        cwd=cwd,
        env={"PATH": path, "LC_ALL": "C.UTF-8", "GS_TMP": str(cwd)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def sandbox() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="goldsmith-custom-") as name:
        root = Path(name)
        (root / "bin").mkdir()
        yield root


def fake_tool(sandbox: Path, name: str, output: str, rc: int = 0) -> str:
    """A PATH whose ``name`` prints ``output`` and exits ``rc``, and whose other
    tools are the host's (``sandbox/bin`` must exist)."""
    (sandbox / f"{name}.out").write_text(output)
    tool = sandbox / "bin" / name
    tool.write_text(f'#!/bin/sh\ncat "{sandbox}/{name}.out"\nexit {rc}\n')
    tool.chmod(0o755)
    return f"{sandbox / 'bin'}:/usr/bin:/bin"


def fake_nginx(sandbox: Path, config: str, rc: int = 0) -> str:
    """A PATH whose nginx prints ``config`` for -T and whose other tools are the host's."""
    return fake_tool(sandbox, "nginx", config, rc)


def probe_results(profile: Profile, sandbox: Path, path: str) -> dict[str, Any]:
    """Run every probe of the profile's own controls with bash, as gather
    does, and judge the whole profile on that evidence."""
    sections = {PACKAGES.name: Section(0, "nginx-common\tii \t1.22.1-9\n")}
    for sc in profile.controls:
        if not sc.control.custom:
            continue
        mechanism = MECHANISMS[sc.control.mechanism]
        for probe in mechanism.probes(mechanism.parse(sc.params)):
            done = run_bash(f"( {probe.command}\n) </dev/null", path, sandbox)
            sections[probe.name] = Section(done.returncode, done.stdout)
    return {r.id: r for r in evaluate(profile, Facts(sections))}


def test_the_apply_script_holds_the_control_and_its_check_runs(folder: Path, sandbox: Path) -> None:
    profile = load_profile(write_profile(folder, script_control(), sysctl_control()))
    script = render_apply_script(profile)
    assert subprocess.run([BASH, "-n"], input=script, text=True).returncode == 0
    begin = script.index("gs_begin acme.nginx-tokens\n")
    block = script[begin : script.index("gs_end", begin)]
    assert "if gs_pkg_installed nginx-common; then\ntokens=off\n" in block
    assert APPLY in block and "unset tokens" in block
    assert "gs_begin acme.no-magic-sysrq" in script

    # The apply fragment, run for real with the helpers it calls stubbed.
    sc = selected(profile, "acme.nginx-tokens")
    mechanism = MECHANISMS["script"]
    stubs = 'gs_install_content() { cat >"$GS_TMP/installed"; echo "$1 $2" >"$GS_TMP/target"; }\n'
    done = run_bash(stubs + mechanism.render(mechanism.parse(sc.params)), "/usr/bin:/bin", sandbox)
    assert done.returncode == 0, done.stderr
    assert (sandbox / "installed").read_text() == "server_tokens off;\n"
    assert (sandbox / "target").read_text() == "/etc/nginx/conf.d/acme-tokens.conf 0644\n"

    good = fake_nginx(sandbox, "http {\n    server_tokens off;\n}\n")
    results = probe_results(profile, sandbox, good)
    assert results["acme.nginx-tokens"].status is Status.passed
    bad = fake_nginx(sandbox, "http {\n    # server_tokens off;\n}\n")
    result = probe_results(profile, sandbox, bad)["acme.nginx-tokens"]
    assert result.status is Status.failed and result.expected == "server_tokens off"
    broken = fake_nginx(sandbox, "", rc=1)
    result = probe_results(profile, sandbox, broken)["acme.nginx-tokens"]
    assert result.status is Status.failed and "nginx -T failed" in result.observed


def test_references_reach_results_junit_and_the_cli(folder: Path, sandbox: Path) -> None:
    path = write_profile(folder, script_control())
    profile = load_profile(path)
    bad = fake_nginx(sandbox, "server_tokens on;\n")
    result = probe_results(profile, sandbox, bad)["acme.nginx-tokens"]
    assert result.status is Status.failed and result.references == ("acme WEB-7",)
    assert result.area == "web" and result.title == "nginx does not reveal its version"
    run = ValidationRun(
        template_name="t",
        template_version="1",
        image_path="disk.qcow2",
        image_sha256="0" * 64,
        image_sha512="0" * 128,
        profile_id=profile.id,
        profile_version=profile.version,
        profile_digest=profile.digest,
        started="2026-01-01T00:00:00Z",
        finished="2026-01-01T00:01:00Z",
        accelerator="tcg",
        goldsmith_version="0",
        timings={},
        results=(result,),
        packages=(),
    )
    junit = render_junit(run).decode()
    assert 'name="acme.nginx-tokens nginx does not reveal its version"' in junit
    assert "ref:      acme WEB-7" in junit
    assert run.to_dict()["results"][0]["references"] == ["acme WEB-7"]

    runner = CliRunner()
    shown = runner.invoke(cli, ["controls", "show", "acme.nginx-tokens", "--profile", str(path)])
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    assert document["references"] == ["acme WEB-7"]
    assert document["params"]["variables"] == {"tokens": "off"}
    assert [f["path"] for f in document["files"]] == [
        "controls/tokens.check.sh",
        "controls/tokens.apply.sh",
    ]
    listed = runner.invoke(cli, ["controls", "list", "--profile", str(path)])
    assert "acme.nginx-tokens" in listed.output and "(acme WEB-7)" in listed.output
    missing = runner.invoke(cli, ["controls", "show", "acme.nginx-tokens"])
    assert missing.exit_code == 2
    profile_doc = json.loads(runner.invoke(cli, ["profile", "show", str(path)]).output)
    (entry,) = [c for c in profile_doc["controls"] if c["id"] == "acme.nginx-tokens"]
    assert entry["references"] == ["acme WEB-7"] and entry["definition"]["files"]
    assert profile_doc["digest"] == profile.digest


# ---- the webserver example ---------------------------------------------------------------


def test_the_webserver_example_resolves_with_its_own_control(sandbox: Path) -> None:
    profile = load_profile(WEBSERVER)
    assert profile.id == "example-webserver"
    parent = {sc.id for sc in load_profile("cis-level1-server").controls}
    assert {sc.id for sc in profile.controls} == parent | {"example.nginx-server-tokens"}
    sc = selected(profile, "example.nginx-server-tokens")
    assert sc.control.only_if is not None and sc.control.only_if.installed == "nginx-common"
    assert [f.path for f in sc.control.files] == [
        "controls/nginx-server-tokens.check.sh",
        "controls/nginx-server-tokens.apply.sh",
    ]
    assert sc.control.references.strings()
    script = render_apply_script(profile)
    assert subprocess.run([BASH, "-n"], input=script, text=True).returncode == 0
    assert "/etc/nginx/conf.d/example-server-tokens.conf" in script

    # What nginx -T prints on the example's image: Debian's nginx.conf (its
    # own server_tokens commented out), the snippet the control writes, the site.
    apply = sc.control.params["apply"]
    snippet = apply.split("<<'EOF2'\n", 1)[1].split("EOF2\n", 1)[0]
    assert "server_tokens off;" in snippet
    site = (WEBSERVER.parent / "files" / "nginx-site.conf").read_text()
    debian = "http {\n\t# server_tokens off;\n\tinclude /etc/nginx/conf.d/*.conf;\n}\n"
    dump = (
        "# configuration file /etc/nginx/nginx.conf:\n"
        + debian
        + "# configuration file /etc/nginx/conf.d/example-server-tokens.conf:\n"
        + snippet
        + "# configuration file /etc/nginx/sites-enabled/default:\n"
        + site
    )
    results = probe_results(profile, sandbox, fake_nginx(sandbox, dump))
    passed = results["example.nginx-server-tokens"]
    assert passed.status is Status.passed, passed.observed
    without = fake_nginx(sandbox, debian + site.replace("server_tokens off;", ""))
    failed = probe_results(profile, sandbox, without)["example.nginx-server-tokens"]
    assert failed.status is Status.failed
    build = fake_nginx(sandbox, dump.replace("# server_tokens off;", "server_tokens build;"))
    assert probe_results(profile, sandbox, build)["example.nginx-server-tokens"].status is (
        Status.failed
    )
