"""End-to-end fixtures: real QEMU guests, built once per session and shared.

Set GOLDSMITH_E2E_OUT to keep artifacts between runs (a rebuild with the same
inputs is then a no-op); by default they live in pytest's temporary folder.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aptproxy
import aptrepo
import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDSMITH = str(Path(sys.executable).parent / "goldsmith")
VM_TOOLS = ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4", "sfdisk")


def require_vm_tools() -> None:
    """Under CI a missing tool fails the test: VM tests must never silently skip there."""
    missing = [tool for tool in VM_TOOLS if shutil.which(tool) is None]
    if missing:
        message = f"VM tools missing: {', '.join(missing)} (run `make deps`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def goldsmith(*args: str | Path, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GOLDSMITH, *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def only_result(entries: Any) -> dict[str, Any]:
    """The one entry's result of build/release --json (a list, whatever the
    number of specs), after checking it succeeded."""
    assert isinstance(entries, list) and len(entries) == 1, entries
    assert entries[0]["exit_code"] == 0, entries
    result: dict[str, Any] = entries[0]["result"]
    return result


def run_json(*args: str | Path, expect: int = 0, timeout: float = 3600) -> Any:
    proc = goldsmith(*args, timeout=timeout)
    assert proc.returncode == expect, (
        f"goldsmith {' '.join(map(str, args))} exited {proc.returncode}, expected {expect}\n"
        f"--- stderr ---\n{proc.stderr[-4000:]}"
    )
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def vm_tools() -> None:
    require_vm_tools()


@pytest.fixture(scope="session")
def goldsmith_json() -> Callable[..., Any]:
    """Run the goldsmith CLI, assert its exit code, return its JSON output."""
    return run_json


@pytest.fixture(scope="session")
def e2e_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("GOLDSMITH_E2E_OUT")
    if env:
        Path(env).mkdir(parents=True, exist_ok=True)
        return Path(env)
    return tmp_path_factory.mktemp("e2e-out")


# The host secret the webserver example's registration step takes from the
# environment: the block-level scan must prove no copy of it is in the template.
REGISTRATION_TOKEN = "gs-e2e-registration-" + secrets.token_hex(16)
# The password of the apt proxy the webserver build downloads through: the
# proxy refuses requests without it, and no copy may be left in the template.
PROXY_TOKEN = "gs-e2e-proxy-" + secrets.token_hex(16)
PROXY_VARIABLE = "EXAMPLE_APT_PROXY"


@pytest.fixture(scope="session")
def webserver_spec(e2e_out: Path) -> Iterator[Path]:
    """examples/webserver copied beside the artifacts, with the signed apt
    repository its apt step names, served on the host's loopback for the session."""
    source = e2e_out / "webserver-src"
    repo_folder = e2e_out / "webserver-repo"
    if not (repo_folder / "key.asc").is_file():
        shutil.rmtree(repo_folder, ignore_errors=True)
        repo_folder.mkdir(parents=True)
        aptrepo.make_repo(repo_folder)
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(REPO / "examples/webserver", source)
    (source / "keys").mkdir(exist_ok=True)
    shutil.copy(repo_folder / "key.asc", source / "keys/example-tools.asc")
    os.environ["EXAMPLE_REGISTRATION_TOKEN"] = REGISTRATION_TOKEN
    with (
        aptrepo.serve(repo_folder) as port,
        aptproxy.serve_proxy(e2e_out / "webserver-proxy", PROXY_TOKEN) as proxy,
    ):
        os.environ[PROXY_VARIABLE] = proxy.guest_url
        spec = source / "webserver.yaml"
        text = spec.read_text().replace(
            "http://10.0.2.2:8765/example-tools", f"http://{aptrepo.GUEST_HOST}:{port}/repo"
        )
        # Debian's mirror through the proxy, the company repository directly.
        text += f"apt_proxy:\n  env_from_host: {PROXY_VARIABLE}\n  direct: [{aptrepo.GUEST_HOST}]\n"
        spec.write_text(text)
        yield spec


@pytest.fixture(scope="session")
def webserver_proxy_log(webserver_spec: Path, e2e_out: Path) -> Path:
    return e2e_out / "webserver-proxy" / "tinyproxy.log"


@pytest.fixture(scope="session")
def parallel_build(e2e_out: Path, webserver_spec: Path) -> list[dict[str, Any]]:
    """The shipped Debian 12 baseline, CIS level 1 and hardened templates and
    the provisioned webserver example, built once for the session, side by side."""
    require_vm_tools()
    specs = [
        REPO / "templates/debian-12-hardened.yaml",
        REPO / "templates/debian-12-cis-level1.yaml",
        REPO / "templates/debian-12-baseline.yaml",
        webserver_spec,
    ]
    results: list[dict[str, Any]] = run_json(
        "build", *specs, "--out", e2e_out, "--jobs", "4", "--json", timeout=5400
    )
    return results


def _artifact(results: list[dict[str, Any]], name: str) -> Path:
    for entry in results:
        if Path(entry["spec"]).stem == name:
            assert entry["exit_code"] == 0, entry
            return Path(entry["result"]["artifact"])
    raise AssertionError(f"{name} was not built: {results}")


@pytest.fixture(scope="session")
def baseline_artifact(parallel_build: list[dict[str, Any]]) -> Path:
    return _artifact(parallel_build, "debian-12-baseline")


@pytest.fixture(scope="session")
def webserver_artifact(parallel_build: list[dict[str, Any]]) -> Path:
    return _artifact(parallel_build, "webserver")


@pytest.fixture(scope="session")
def cis_artifact(parallel_build: list[dict[str, Any]]) -> Path:
    return _artifact(parallel_build, "debian-12-cis-level1")


@pytest.fixture(scope="session")
def hardened_artifact(parallel_build: list[dict[str, Any]]) -> Path:
    return _artifact(parallel_build, "debian-12-hardened")


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("keys") / "release-key"
    proc = goldsmith("keygen", key)
    assert proc.returncode == 0, proc.stderr
    return key


@pytest.fixture(scope="session")
def baseline_release(
    baseline_artifact: Path, baseline_validation: dict[str, Any], signing_key: Path
) -> Any:
    """release on the validated baseline: a no-op build, the validation reused, then signed."""
    entries = run_json(
        "release",
        REPO / "templates/debian-12-baseline.yaml",
        "--key",
        signing_key,
        "--out",
        baseline_artifact.parent,
        "--json",
    )
    return only_result(entries)


@pytest.fixture(scope="session")
def baseline_validation(baseline_artifact: Path) -> dict[str, Any]:
    """One validation boot of the baseline template, with the user checks."""
    summary: dict[str, Any] = run_json(
        "validate",
        baseline_artifact,
        "--tests",
        REPO / "tests/e2e/guest_checks/check_guest.py",
        "--json",
    )
    return summary


@pytest.fixture(scope="session")
def unhardened_artifact(e2e_out: Path, baseline_artifact: Path) -> Iterator[Path]:
    """The bare debootstrap base, presented as an artifact, to prove checks can fail."""
    from builder.base import prepare_base
    from builder.spec import load_spec

    base = prepare_base(load_spec(REPO / "templates/debian-12-baseline.yaml"))
    folder = e2e_out / "unhardened-base"
    folder.mkdir(exist_ok=True)
    disk = folder / "disk.qcow2"
    if not disk.exists():
        subprocess.run(
            ["qemu-img", "convert", "-O", "qcow2", str(base.path), str(disk)], check=True
        )
    record = json.loads((baseline_artifact / "build.json").read_text())
    record["template"] = {"name": "unhardened-base", "version": "0"}
    record["build_vm"] = {"machine_id": "", "host_keys": {}, "builder_key": ""}
    (folder / "build.json").write_text(json.dumps(record))
    yield folder


USER_TESTS = REPO / "examples/webserver/tests/test_webserver.py"


@pytest.fixture(scope="session")
def webserver_release(
    webserver_artifact: Path, webserver_spec: Path, signing_key: Path
) -> dict[str, Any]:
    """The session's webserver build released in place (validated with its
    user tests and signed), shared by every module that needs it released."""
    entries = run_json(
        "release",
        webserver_spec,
        "--key",
        signing_key,
        "--out",
        webserver_artifact.parent,
        "--tests",
        USER_TESTS,
        "--json",
    )
    return only_result(entries)
