"""The examples are part of the product: they parse, name only commands and
options goldsmith has, and the auditor's openssl walk-through really verifies
an envelope signed here (and really refuses a tampered one)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# pytest's default import mode puts tests/unit on sys.path for this file, and from
# there the folder tests/unit/builder (tests, no __init__.py) would be imported as a
# namespace package named "builder". A regular package anywhere on sys.path wins
# over a namespace package, so make sure the project root is on it.
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

import click  # noqa: E402
import jsonschema  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from builder.cli import cli  # noqa: E402
from builder.cli.plan import (  # noqa: E402
    GITLAB_REBUILD_TEMPLATE,
    GITLAB_VERIFY_TEMPLATE,
    PlannedTemplate,
    PlanReason,
    render_github_matrix,
    render_gitlab_pipeline,
)
from hardening.profile import list_profiles, load_profile  # noqa: E402
from validate.dsse import PAYLOAD_TYPE_IN_TOTO, sign_envelope  # noqa: E402
from validate.keys import KeyType, PrivateKey, generate_key  # noqa: E402

EXAMPLES = ROOT / "examples"
YAML_FILES = sorted([*EXAMPLES.glob("*.yml"), *EXAMPLES.glob("*.yaml")])
MARKDOWN_FILES = sorted(EXAMPLES.glob("*.md"))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_examples_exist_and_the_index_names_them_all() -> None:
    names = {p.name for p in EXAMPLES.iterdir()}
    assert {
        "README.md",
        "github-actions.yml",
        "gitlab-ci.yml",
        "custom-profile.yaml",
        "auditor-walkthrough.md",
    } <= names
    index = (EXAMPLES / "README.md").read_text()
    for name in names - {"README.md"}:
        assert f"]({name})" in index, f"examples/README.md does not link {name}"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_every_yaml_parses(path: Path) -> None:
    assert isinstance(load_yaml(path), dict)


# --- shell text in the examples ---------------------------------------------------


def workflow_scripts(path: Path) -> Iterator[str]:
    """The shell a CI system would run: GitHub `run:` steps, GitLab script lists."""
    doc = load_yaml(path)
    if path.name == "github-actions.yml":
        for job in doc["jobs"].values():
            for step in job["steps"]:
                if "run" in step:
                    yield step["run"]
        return
    for job in doc.values():
        if isinstance(job, dict):
            for key in ("before_script", "script", "after_script"):
                yield from job.get(key, [])


def markdown_code(path: Path) -> Iterator[tuple[str, str]]:
    """(language, text) of each fenced block, then ("inline", text) of each `span`."""
    text = path.read_text()
    fence = re.compile(r"^```([\w-]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
    for match in fence.finditer(text):
        yield match.group(1), match.group(2)
    for span in re.findall(r"`([^`\n]+)`", fence.sub("", text)):
        yield "inline", span


def shell_texts() -> Iterator[tuple[str, str]]:
    for path in YAML_FILES:
        if path.name != "custom-profile.yaml":
            for script in workflow_scripts(path):
                yield path.name, script
    for path in MARKDOWN_FILES:
        for language, code in markdown_code(path):
            if language in ("sh", "console", "inline"):
                # A console block shows prompts; what follows "$ " is the command.
                yield path.name, re.sub(r"^\$ ", "", code, flags=re.MULTILINE)


def goldsmith_invocations(text: str) -> Iterator[list[str]]:
    """The argument lists given to goldsmith in a piece of shell."""
    joined = text.replace("\\\n", " ")
    for line in joined.splitlines():
        if "goldsmith" not in line:
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True  # and "#" starts a comment, as in the shell
        tokens = list(lexer)
        for i, token in enumerate(tokens):
            if token == "goldsmith" or token.endswith("/goldsmith"):
                args = []
                for arg in tokens[i + 1 :]:
                    if arg and set(arg) <= set("|&;()<>"):
                        break
                    args.append(arg)
                yield args


def all_invocations() -> list[tuple[str, list[str]]]:
    found = [(where, args) for where, text in shell_texts() for args in goldsmith_invocations(text)]
    assert found, "no goldsmith commands found in the examples"
    return found


def known_commands() -> dict[str, click.Command]:
    """Every command the CLI offers (it loads them lazily, so ask it for each)."""
    ctx = click.Context(cli)
    commands = {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}
    return {name: command for name, command in commands.items() if command is not None}


def test_every_named_command_exists() -> None:
    named = {args[0] for _, args in all_invocations() if args and not args[0].startswith("-")}
    assert {"plan", "release", "push", "pull", "verify", "outdated", "history"} <= named
    available = set(known_commands())
    assert named <= available, f"examples name unknown commands: {sorted(named - available)}"


def _option_names(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def test_every_option_given_exists() -> None:
    commands = known_commands()
    for where, args in all_invocations():
        words = [a for a in args if not a.startswith("-")]
        if not words or words[0] not in commands:
            continue  # not yet registered: only its name can be checked
        command = commands[words[0]]
        rest = args[args.index(words[0]) + 1 :]
        if isinstance(command, click.Group):
            sub = next(a for a in rest if not a.startswith("-"))
            assert sub in command.commands, f"{where}: goldsmith {words[0]} has no {sub!r}"
            command = command.commands[sub]
            rest = rest[rest.index(sub) + 1 :]
        for arg in rest:
            if arg.startswith("-") and arg != "-":
                option = arg.split("=", 1)[0]
                assert option in _option_names(command), (
                    f"{where}: `goldsmith {' '.join(args)}`: {command.name} has no {option}"
                )


def test_workflow_scripts_are_valid_shell() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    for path in YAML_FILES:
        if path.name == "custom-profile.yaml":
            continue
        # GitHub substitutes ${{ ... }} before the shell sees the script.
        script = "\n".join(workflow_scripts(path))
        script = re.sub(r"\$\{\{[^}]*\}\}", "x", script)
        result = subprocess.run([bash, "-n"], input=script, capture_output=True, text=True)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


# --- the CI pipelines ------------------------------------------------------------


def load_workflow(path: Path) -> Any:
    """A CI file as its CI system reads it. YAML 1.1 reads GitHub's key `on`
    as true; GitHub (YAML 1.2) reads it as "on"."""
    doc = load_yaml(path)
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def vendored_schema(name: str) -> dict[str, Any]:
    """SchemaStore's schema as check-jsonschema vendors it (a dev dependency)."""
    text = files("check_jsonschema.builtin_schemas.vendor").joinpath(name).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_errors(doc: Any, schema_name: str) -> list[str]:
    schema = vendored_schema(schema_name)
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in validator.iter_errors(doc)
    ]


@pytest.mark.parametrize(
    ("example", "schema"),
    [("github-actions.yml", "github-workflows.json"), ("gitlab-ci.yml", "gitlab-ci.json")],
)
def test_ci_files_follow_the_published_schemas(example: str, schema: str) -> None:
    assert schema_errors(load_workflow(EXAMPLES / example), schema) == []


# Two templates to rebuild, as plan prints them for the pipelines below.
PLANNED = [
    PlannedTemplate(
        Path("templates/debian-12-baseline.yaml"),
        "debian-12-baseline",
        Path("records/debian-12-baseline-1.0.3/manifest.dsse.json"),
        "1.0.3",
        (PlanReason("security", "2 security updates available"),),
    ),
    PlannedTemplate(
        Path("templates/webserver.yaml"),
        "example-webserver",
        None,
        None,
        (PlanReason("new", "never built: no signed manifest of example-webserver"),),
    ),
]


def steps_of(job: dict[str, Any]) -> tuple[list[str], str]:
    steps = job["steps"]
    return [s.get("uses", "") for s in steps], "\n".join(s.get("run", "") for s in steps)


def test_github_workflow_plans_rebuilds_each_template_then_verifies() -> None:
    doc = load_workflow(EXAMPLES / "github-actions.yml")
    assert doc["on"]["schedule"][0]["cron"]
    assert "workflow_dispatch" in doc["on"]
    jobs = doc["jobs"]
    assert list(jobs) == ["plan", "rebuild", "verify"]

    uses, runs = steps_of(jobs["plan"])
    assert uses[0].startswith("actions/checkout@")
    assert re.search(r"goldsmith plan \$SPECS --manifests records --format github", runs)
    # 2 and 3 fail the run; 1 is a plan, not an error.
    assert re.search(r"\|\| status=\$\?", runs) and '"$status" -gt 1' in runs
    assert jobs["plan"]["outputs"]["matrix"] == "${{ steps.plan.outputs.matrix }}"

    rebuild = jobs["rebuild"]
    assert rebuild["needs"] == "plan"
    assert rebuild["if"] == "needs.plan.outputs.rebuild == 'true'"
    assert rebuild["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert rebuild["strategy"]["fail-fast"] is False
    _, runs = steps_of(rebuild)
    assert "make deps" in runs
    assert runs.index("umask 077") < runs.index("goldsmith release")
    assert runs.index("goldsmith release") < runs.index("goldsmith verify")
    assert runs.index("goldsmith verify") < runs.index("goldsmith push")
    # Bases cached across runs, in the folder goldsmith caches them in.
    (cache,) = [s for s in rebuild["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert rebuild["env"]["GOLDSMITH_CACHE"].endswith("/" + cache["with"]["path"])
    assert "${{ matrix.name }}" in cache["with"]["key"]
    # JUnit to the checks UI, whatever the outcome but a cancellation.
    (junit,) = [s for s in rebuild["steps"] if "junit" in s.get("uses", "")]
    assert junit["if"] == "${{ !cancelled() }}"
    assert junit["with"]["report_paths"] == "out/*/junit.xml"
    # Logs and .FAILED-* folders of a failed job, under a name of its own.
    uploads = [s for s in rebuild["steps"] if s.get("uses", "").startswith("actions/upload-")]
    (failed,) = [s for s in uploads if s.get("if") == "failure()"]
    assert ".FAILED-" in failed["with"]["path"] and "build.log" in failed["with"]["path"]
    names = [s["with"]["name"] for s in uploads]
    assert all("${{ matrix.name }}" in n for n in names)
    assert len(set(names)) == len(names)

    verify = jobs["verify"]
    assert "rebuild" in verify["needs"]
    _, runs = steps_of(verify)
    (download,) = [s for s in verify["steps"] if "download-artifact" in s.get("uses", "")]
    assert download["with"]["pattern"] == "pushed-*" and download["with"]["merge-multiple"]
    pull = r"goldsmith pull .* --key \"\$TRUSTED_KEY\" .*--out \"verified/"
    assert re.search(pull, runs.replace("\\\n", " "))
    assert runs.index("goldsmith pull") < runs.index("gh release create")


def test_github_workflow_reads_what_plan_prints() -> None:
    text = (EXAMPLES / "github-actions.yml").read_text()
    matrix = json.loads(render_github_matrix(PLANNED))
    assert [e["name"] for e in matrix["include"]] == ["debian-12-baseline", "example-webserver"]
    expressions = re.findall(r"\$\{\{(.*?)\}\}", text)
    used = {name for e in expressions for name in re.findall(r"\bmatrix\.(\w+)", e)}
    assert used == {"spec", "name", "reasons"}
    assert used <= set(matrix["include"][0]), used
    # Matrix values are data from specs and manifests: they reach the shell as
    # environment variables, never as ${{ }} spliced into a script.
    for job in load_workflow(EXAMPLES / "github-actions.yml")["jobs"].values():
        for step in job["steps"]:
            assert "${{ matrix." not in step.get("run", "")
    workflow = load_workflow(EXAMPLES / "github-actions.yml")
    workflow["jobs"]["rebuild"]["strategy"]["matrix"] = matrix
    assert schema_errors(workflow, "github-workflows.json") == []


def gitlab_job_scripts(job: dict[str, Any]) -> str:
    return "\n".join(job.get("before_script", []) + job["script"] + job.get("after_script", []))


def test_gitlab_pipeline_plans_rebuilds_each_template_then_verifies() -> None:
    doc = load_workflow(EXAMPLES / "gitlab-ci.yml")
    assert doc["stages"] == ["plan", "rebuild", "verify"]
    sources = " ".join(r["if"] for r in doc["workflow"]["rules"])
    for source in ('"schedule"', '"web"', '"parent_pipeline"'):
        assert source in sources

    plan = doc["plan"]
    script = gitlab_job_scripts(plan)
    assert re.search(r"goldsmith plan \$SPECS --manifests records --format gitlab", script)
    assert '"$status" -gt 1' in script
    assert set(plan["artifacts"]["paths"]) == {"templates.yml", "records/"}
    trigger = doc["templates"]
    assert trigger["trigger"]["include"] == [{"artifact": "templates.yml", "job": "plan"}]
    assert trigger["trigger"]["strategy"] == "depend"
    # Neither runs again inside the child pipeline, which includes this file.
    for job in (plan, trigger):
        assert job["rules"][0] == {
            "if": '$CI_PIPELINE_SOURCE == "parent_pipeline"',
            "when": "never",
        }
    assert any(r.get("when") == "manual" for r in trigger["rules"])

    rebuild = doc[GITLAB_REBUILD_TEMPLATE]
    script = gitlab_job_scripts(rebuild)
    assert "make deps" in script
    assert script.index("umask 077") < script.index("goldsmith release")
    assert script.index("goldsmith release") < script.index("goldsmith verify")
    assert script.index("goldsmith verify") < script.index("goldsmith push")
    assert rebuild["needs"] == [{"pipeline": "$PARENT_PIPELINE_ID", "job": "plan"}]
    assert rebuild["variables"]["GOLDSMITH_CACHE"].endswith("/.cache/goldsmith")
    assert rebuild["cache"]["paths"] == [".cache/goldsmith/"]
    assert "$TEMPLATE" in rebuild["cache"]["key"]
    assert rebuild["artifacts"]["reports"]["junit"] == "out/*/junit.xml"
    assert rebuild["artifacts"]["when"] == "always"
    after = "\n".join(rebuild["after_script"])
    assert '"$CI_JOB_STATUS" = failed' in after and ".FAILED-" in after
    assert "failed/" in rebuild["artifacts"]["paths"]

    verify = doc[GITLAB_VERIFY_TEMPLATE]
    script = gitlab_job_scripts(verify)
    pull = r'goldsmith pull .* --key "\$TRUSTED_KEY" .*--out "verified/'
    assert re.search(pull, script.replace("\\\n", " "))
    assert script.index("goldsmith pull") < script.index("--upload-file")


def merge_include(child: dict[str, Any], included: dict[str, Any]) -> dict[str, Any]:
    """GitLab's merge of an included file under the including one: mappings
    merged key by key, the including file's values winning."""
    merged = dict(included)
    for key, value in child.items():
        if key == "include":
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_include(value, merged[key])
        else:
            merged[key] = value
    return merged


@pytest.mark.parametrize("planned", [PLANNED, PLANNED[:1], []], ids=["two", "one", "none"])
def test_gitlab_child_pipeline_from_plan_runs_with_this_file(
    planned: list[PlannedTemplate],
) -> None:
    child = yaml.safe_load(render_gitlab_pipeline(planned, ".gitlab-ci.yml"))
    assert schema_errors(child, "gitlab-ci.json") == []
    if not planned:
        assert list(child) == ["nothing-to-rebuild"]
        return
    parent = load_workflow(EXAMPLES / "gitlab-ci.yml")
    merged = merge_include(child, parent)
    assert schema_errors(merged, "gitlab-ci.json") == []
    matrix = child["rebuild"]["parallel"]["matrix"]
    assert [m["TEMPLATE"] for m in matrix] == [t.name for t in planned]
    # What the hidden jobs read is what the matrix sets.
    script = gitlab_job_scripts(parent[GITLAB_REBUILD_TEMPLATE])
    assert set(matrix[0]) == {"SPEC", "TEMPLATE"}
    assert '"$SPEC"' in script and "$TEMPLATE" in script
    assert child["verify"]["needs"] == ["rebuild"]
    assert parent[GITLAB_VERIFY_TEMPLATE]["stage"] == "verify"


# --- the custom profile -----------------------------------------------------------


def test_custom_profile_shape() -> None:
    doc = load_yaml(EXAMPLES / "custom-profile.yaml")
    assert doc["extends"] == "cis-level1-server"
    assert isinstance(doc["parameters"], dict) and doc["parameters"]
    (waiver,) = doc["waivers"]
    assert set(waiver) == {"control", "reason", "expires"}
    assert waiver["reason"].strip()
    assert isinstance(waiver["expires"], datetime.date)
    # The build and validation users must keep their SSH access.
    assert {"gsbuild", "gsvalidate"} <= set(doc["parameters"]["ssh_allow_groups"])


@pytest.mark.skipif(
    "cis-level1-server" not in list_profiles(), reason="cis-level1-server is not shipped yet"
)
def test_custom_profile_resolves() -> None:
    doc = load_yaml(EXAMPLES / "custom-profile.yaml")
    profile = load_profile(EXAMPLES / "custom-profile.yaml")
    assert profile.id == doc["id"]
    parent = {c.id for c in load_profile("cis-level1-server").controls}
    assert {c.id for c in profile.controls} == parent
    for key, value in doc["parameters"].items():
        assert profile.parameters[key] == value
    (waived,) = [c for c in profile.controls if c.id == doc["waivers"][0]["control"]]
    assert waived.waiver is not None
    assert waived.waiver.expires == doc["waivers"][0]["expires"]


# --- the auditor's walk-through, run for real ---------------------------------------

NEEDED = ("bash", "openssl", "jq", "base64", "sha256sum", "sha512sum")


def walkthrough_script(artifact: Path, public_key: Path) -> str:
    """The walk-through's sh blocks, in order, pointed at this test's files."""
    text = (EXAMPLES / "auditor-walkthrough.md").read_text()
    walkthrough = EXAMPLES / "auditor-walkthrough.md"
    blocks = [code for language, code in markdown_code(walkthrough) if language == "sh"]
    assert blocks and "openssl pkeyutl -verify" in text
    script = "\n".join(blocks)
    script = re.sub(r"^ARTIFACT=.*$", f"ARTIFACT={shlex.quote(str(artifact))}", script, flags=re.M)
    script = re.sub(r"^PUB=.*$", f"PUB={shlex.quote(str(public_key))}", script, flags=re.M)
    return "set -eu\n" + script


def signed_artifact(folder: Path, key: PrivateKey) -> tuple[Path, Path]:
    artifact = folder / "out" / "debian-12-baseline-1.0.1"
    artifact.mkdir(parents=True)
    image = artifact / "disk.qcow2"
    image.write_bytes(b"QFI\xfb" + bytes(range(256)) * 64)
    statement: dict[str, Any] = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {
                "name": "debian-12-baseline-1.0.1.qcow2",
                "digest": {
                    "sha256": hashlib.sha256(image.read_bytes()).hexdigest(),
                    "sha512": hashlib.sha512(image.read_bytes()).hexdigest(),
                },
            }
        ],
        "predicateType": "https://goldsmith.dev/template/v1",
        "predicate": {
            "template": {"name": "debian-12-baseline", "version": "1.0.1", "format": "qcow2"},
            "results": {"approved": True, "counts": {"passed": 2}},
            "profile": {"id": "baseline", "version": "1.0.0", "digest": "sha256:" + "0" * 64},
            "waivers": [],
            "approval": {
                "time": "2026-11-27T08:00:00Z",
                "keyid": key.keyid,
                "validUntil": "2027-05-26T08:00:00Z",
            },
            "sbom": {
                "format": "goldsmith-dpkg/v1",
                "packages": [{"name": "libc6", "version": "2.36-9", "architecture": "amd64"}],
            },
        },
    }
    # Not ASCII on purpose: PAE lengths are bytes, and the walk-through must count bytes.
    statement["predicate"]["template"]["title"] = "Débian — durci"
    payload = json.dumps(statement, ensure_ascii=False).encode("utf-8")
    envelope = sign_envelope(PAYLOAD_TYPE_IN_TOTO, payload, [key])
    (artifact / "manifest.dsse.json").write_bytes(envelope.to_json())
    public = folder / "release.pub"
    public.write_bytes(key.public.to_pem())
    return artifact, public


def run_walkthrough(folder: Path, artifact: Path, public: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", walkthrough_script(artifact, public)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )


needs_tools = pytest.mark.skipif(
    any(shutil.which(t) is None for t in NEEDED), reason="needs " + ", ".join(NEEDED)
)


@needs_tools
@pytest.mark.parametrize("key_type", list(KeyType), ids=str)
def test_walkthrough_verifies_a_signed_manifest(tmp_path: Path, key_type: KeyType) -> None:
    key = generate_key(key_type)
    artifact, public = signed_artifact(tmp_path, key)
    result = run_walkthrough(tmp_path, artifact, public)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Signature Verified Successfully" in out or "Verified OK" in out
    assert "application/vnd.in-toto+json" in out
    # The keyid the envelope names and the one computed from the PEM both appear.
    assert out.count(key.keyid) >= 2
    assert out.count("disk.qcow2: OK") == 2
    assert "https://goldsmith.dev/template/v1" in out


@needs_tools
def test_walkthrough_refuses_a_tampered_statement(tmp_path: Path) -> None:
    artifact, public = signed_artifact(tmp_path, generate_key())
    manifest = artifact / "manifest.dsse.json"
    envelope = json.loads(manifest.read_text())
    signed = base64.b64decode(envelope["payload"])
    payload = signed.replace(b'"approved": true', b'"approved": false')
    assert payload != signed
    envelope["payload"] = base64.b64encode(payload).decode()
    manifest.write_text(json.dumps(envelope))
    result = run_walkthrough(tmp_path, artifact, public)
    assert result.returncode != 0
    assert "disk.qcow2: OK" not in result.stdout  # it stopped at the signature


@needs_tools
def test_walkthrough_refuses_another_key(tmp_path: Path) -> None:
    artifact, public = signed_artifact(tmp_path, generate_key())
    public.write_bytes(generate_key().public.to_pem())
    assert run_walkthrough(tmp_path, artifact, public).returncode != 0


@needs_tools
def test_walkthrough_refuses_a_changed_image(tmp_path: Path) -> None:
    artifact, public = signed_artifact(tmp_path, generate_key())
    with open(artifact / "disk.qcow2", "ab") as image:
        image.write(b"\0")
    result = run_walkthrough(tmp_path, artifact, public)
    assert result.returncode != 0
    assert "Signature Verified Successfully" in result.stdout
    assert "FAILED" in result.stdout
