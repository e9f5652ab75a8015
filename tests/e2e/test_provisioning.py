"""Issue: the user's own golden image. The webserver example (files, shell with
a host secret, a signed apt repository, Ansible, on top of CIS Level 1) is
built, validated with its own checks, signed and verified; a one-byte change
in one input is named by outdated and released as the next patch version;
failing steps fail the build with a clear message and a .FAILED-* folder."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aptrepo
import pytest
from conftest import (
    PROXY_TOKEN,
    PROXY_VARIABLE,
    REGISTRATION_TOKEN,
    REPO,
    goldsmith,
    only_result,
    run_json,
)

from validate.blockscan import NEEDLES_ID

pytestmark = pytest.mark.vm


def statement_of(artifact: Path) -> dict[str, Any]:
    envelope = json.loads((artifact / "manifest.dsse.json").read_text())
    statement: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return statement


def test_build_record_lists_every_step(webserver_artifact: Path) -> None:
    record = json.loads((webserver_artifact / "build.json").read_text())
    steps = record["provision"]
    assert [s["kind"] for s in steps] == [
        "file",
        "file",
        "file",
        "shell",
        "apt",
        "shell",
        "ansible",
        "reboot",
    ]
    site = steps[1]
    assert site["name"] == "site configuration"
    assert site["inputs"][0]["path"] == "files/nginx-site.conf"
    assert len(site["inputs"][0]["sha256"]) == 64
    assert steps[5]["env_from_host"] == ["EXAMPLE_REGISTRATION_TOKEN"]
    assert all(s["seconds"] >= 0 for s in steps)
    stages = [s["name"] for s in record["steps"]]
    assert stages.index("upgrade") < stages.index("provision") < stages.index("harden")


def test_the_secret_is_nowhere_in_the_artifact_folder(webserver_artifact: Path) -> None:
    for path in webserver_artifact.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert REGISTRATION_TOKEN.encode() not in data, path
            assert PROXY_TOKEN.encode() not in data, path


def test_the_build_downloaded_through_the_proxy(
    webserver_artifact: Path, webserver_proxy_log: Path
) -> None:
    """The proxy refuses requests without its password, so each request it
    forwarded to Debian's mirror came from a build that had it."""
    record = json.loads((webserver_artifact / "build.json").read_text())
    assert record["apt_proxy"] == {"env_from_host": PROXY_VARIABLE, "direct": ["10.0.2.2"]}
    assert "goldsmith's apt proxy configuration" in record["sealed"]
    log = webserver_proxy_log.read_text(errors="replace")
    assert 'Established connection to host "deb.debian.org"' in log
    assert PROXY_TOKEN not in log


def test_release_validates_signs_and_lists_inputs(
    webserver_release: dict[str, Any],
    webserver_artifact: Path,
    signing_key: Path,
) -> None:
    validation = json.loads((webserver_artifact / "validation.json").read_text())
    statuses = {r["status"] for r in validation["results"]}
    assert validation["approved"] is True, [
        r for r in validation["results"] if r["status"] in ("failed", "error")
    ]
    assert statuses <= {"passed", "waived", "skipped"}
    user = [r for r in validation["results"] if r["area"] == "user"]
    assert len(user) == 5 and all(r["status"] == "passed" for r in user)
    # The proxy file is gone, and the disk's blocks were searched for the
    # proxy URL and password and the registration token: none found.
    by_id = {r["id"]: r for r in validation["results"]}
    assert by_id["HYG-12"]["status"] == "passed"
    needles = by_id[NEEDLES_ID]
    assert needles["status"] == "passed", needles
    assert f"host secret {PROXY_VARIABLE}" in needles["observed"], needles
    assert "host secret EXAMPLE_REGISTRATION_TOKEN" in needles["observed"], needles
    verdict = run_json("verify", webserver_artifact, "--key", f"{signing_key}.pub", "--json")
    assert verdict["trusted"] is True
    steps = statement_of(webserver_artifact)["predicate"]["provision"]
    inputs = {i["path"]: i["sha256"] for s in steps for i in s["inputs"]}
    assert {"files/nginx-site.conf", "files/internal-ca.crt", "ansible/site.yml"} <= set(inputs)
    assert not any(path.startswith("/") for path in inputs)


def test_unchanged_rebuild_is_a_no_op(
    webserver_release: dict[str, Any], webserver_spec: Path, webserver_artifact: Path
) -> None:
    result = only_result(
        run_json("build", webserver_spec, "--out", webserver_artifact.parent, "--json")
    )
    assert result["reused"] is True


def test_one_byte_change_is_named_and_released_as_the_next_patch(
    webserver_release: dict[str, Any],
    webserver_spec: Path,
    webserver_artifact: Path,
    signing_key: Path,
) -> None:
    site = webserver_spec.parent / "files/nginx-site.conf"
    original = site.read_text()
    site.write_text(original.replace("index index.html;", "index index.htm;"))
    try:
        manifest = webserver_artifact / "manifest.dsse.json"
        changed = run_json("outdated", webserver_spec, "--manifest", manifest, "--json", expect=1)
        assert "files/nginx-site.conf" in json.dumps(changed)
        result = only_result(
            run_json(
                "release",
                webserver_spec,
                "--key",
                signing_key,
                "--out",
                webserver_artifact.parent,
                "--json",
            )
        )
        assert result["version"] == "1.0.1"
        assert Path(result["artifact"]).name == "example-webserver-1.0.1"
    finally:
        site.write_text(original)


FAILING: dict[str, dict[str, Any]] = {
    "shell": {"name": "broken script", "shell": {"inline": "echo about to fail\nexit 42"}},
    "ansible": {"name": "broken playbook", "ansible": {"playbook": "play/broken.yml"}},
    "apt": {
        "name": "unsigned repository",
        "apt": {
            "name": "unsigned",
            "uri": "URI",
            "suite": "stable",
            "key": "key.asc",
            "packages": ["example-agent"],
        },
    },
}
EXPECTED = {
    "shell": "provision[0] (broken script) failed: exit code 42",
    "ansible": "provision[0] (broken playbook) failed: ansible-playbook exited with 2",
    "apt": "provision[0] (unsigned repository) failed: exit code 100",
}


def test_failing_steps_fail_the_build(tmp_path: Path, e2e_out: Path) -> None:
    """One build per failure, side by side: a failing shell step, a failing
    playbook, and a repository without a signed Release."""
    unsigned = tmp_path / "unsigned"
    unsigned.mkdir()
    aptrepo.make_repo(unsigned, signed=False)
    (tmp_path / "key.asc").write_bytes((unsigned / "key.asc").read_bytes())
    # A folder of its own: a playbook's whole folder is hashed as its input, and
    # this one holds the gpg home (with gpg-agent's sockets) and the build output.
    (tmp_path / "play").mkdir()
    (tmp_path / "play/broken.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: /bin/false\n"
    )
    base = (REPO / "templates/debian-12-baseline.yaml").read_text()
    out = tmp_path / "out"
    with aptrepo.serve(unsigned) as port:
        specs = []
        for kind, step in FAILING.items():
            if kind == "apt":
                step["apt"]["uri"] = f"http://{aptrepo.GUEST_HOST}:{port}/repo"
            spec = tmp_path / f"fail-{kind}.yaml"
            text = base.replace("name: debian-12-baseline", f"name: fail-{kind}")
            text = text.replace("upgrade: true", "upgrade: false")
            spec.write_text(text + "provision:\n  - " + json.dumps(step) + "\n")
            specs.append(spec)
        proc = goldsmith("build", *specs, "--out", out, "--jobs", "3", "--json", timeout=3600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    results = {Path(r["spec"]).stem.removeprefix("fail-"): r for r in json.loads(proc.stdout)}
    for kind, expected in EXPECTED.items():
        entry = results[kind]
        assert entry["exit_code"] == 1, entry
        assert expected in json.dumps(entry) or expected in proc.stderr, (kind, entry)
        failed = list(out.glob(f"fail-{kind}-1.0.0.FAILED-*"))
        assert len(failed) == 1 and (failed[0] / "build.log").is_file()
        assert not (failed[0] / "disk.qcow2").exists()
        assert not (out / f"fail-{kind}-1.0.0").exists()
    assert "about to fail" in proc.stderr or "about to fail" in json.dumps(results["shell"])
