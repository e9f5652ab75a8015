from __future__ import annotations

import contextlib
import dataclasses
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from builder.errors import InputError
from hardening.results import CheckResult, Status
from validate.usertests import run_user_tests

USER_TESTS = """
import pytest


@pytest.fixture
def broken(host):
    raise RuntimeError("fixture exploded")


@pytest.fixture
def leaky(host):
    yield host
    raise RuntimeError("teardown exploded")


def test_sshd_config_is_private(host):
    assert host.goldsmith_fake
    assert host.file("/etc/ssh/sshd_config").mode == 0o600


def test_runs_as_root(host):
    assert host.run("id -u").stdout.strip() == "0", "not root"


def test_only_on_trixie(host):
    pytest.skip("needs Debian 13")


@pytest.mark.skip(reason="not applicable to this template")
def test_marked_skip(host):
    raise AssertionError("never runs")


def test_uses_a_broken_fixture(broken):
    pass


def test_passes_but_teardown_fails(leaky):
    assert leaky.goldsmith_fake


@pytest.mark.parametrize("port", [22, 2222])
def test_port(host, port):
    assert port == 22
"""


@dataclasses.dataclass(frozen=True)
class FakeResult:
    rc: int
    stdout: str
    stderr: str = ""


class FakeHost:
    """Stands in for the pinned testinfra host: the user's tests see only this."""

    goldsmith_fake = True

    def __init__(self) -> None:
        self.calls: list[str] = []

    def file(self, path: str) -> SimpleNamespace:
        self.calls.append(f"file {path}")
        return SimpleNamespace(mode=0o600)

    def run(self, command: str, *args: str) -> FakeResult:
        self.calls.append(f"run {command}")
        return FakeResult(0, "1000\n")

    def sudo(self, user: str | None = None) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


@pytest.fixture(autouse=True)
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The inner pytest run imports the user's files and prepends their folder to sys.path.
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def by_id(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.id: r for r in results}


def test_each_outcome_becomes_a_user_check(tmp_path: Path) -> None:
    path = write(tmp_path, "test_guest_outcomes.py", USER_TESTS)
    host = FakeHost()

    results, seconds = run_user_tests(host, [path])

    module = "test_guest_outcomes.py"
    found = by_id(results)
    assert {node: r.status for node, r in found.items()} == {
        f"{module}::test_sshd_config_is_private": Status.passed,
        f"{module}::test_runs_as_root": Status.failed,
        f"{module}::test_only_on_trixie": Status.skipped,
        f"{module}::test_marked_skip": Status.skipped,
        f"{module}::test_uses_a_broken_fixture": Status.error,
        f"{module}::test_passes_but_teardown_fails": Status.error,
        f"{module}::test_port[22]": Status.passed,
        f"{module}::test_port[2222]": Status.failed,
    }
    assert {r.area for r in results} == {"user"}
    assert seconds > 0
    # The user's tests ran against the host they were given, not one of testinfra's.
    assert host.calls == ["file /etc/ssh/sshd_config", "run id -u"]


def test_each_result_says_what_happened(tmp_path: Path) -> None:
    path = write(tmp_path, "test_guest_details.py", USER_TESTS)

    found = by_id(run_user_tests(FakeHost(), [path])[0])

    def result(name: str) -> CheckResult:
        return found[f"test_guest_details.py::{name}"]

    passed = result("test_sshd_config_is_private")
    assert (passed.title, passed.observed, passed.expected) == (
        "test_sshd_config_is_private",
        "passed",
        "test passes",
    )
    failed = result("test_runs_as_root")
    assert "not root" in failed.observed and "'1000' == '0'" in failed.observed
    skipped = result("test_only_on_trixie")
    assert skipped.reason == skipped.observed == "Skipped: needs Debian 13"
    assert result("test_marked_skip").reason == "Skipped: not applicable to this template"
    broken = result("test_uses_a_broken_fixture")
    assert broken.observed.startswith("setup: ") and "fixture exploded" in broken.observed
    teardown = result("test_passes_but_teardown_fails")
    assert teardown.observed.startswith("teardown: ") and "teardown exploded" in teardown.observed
    assert result("test_port[2222]").title == "test_port[2222]"


def test_a_folder_of_tests_is_collected(tmp_path: Path) -> None:
    folder = tmp_path / "checks"
    folder.mkdir()
    write(folder, "test_guest_one.py", "def test_one(host):\n    assert host.goldsmith_fake\n")
    write(folder, "test_guest_two.py", "def test_two(host):\n    assert host.goldsmith_fake\n")

    results, _ = run_user_tests(FakeHost(), [folder])

    assert sorted((r.id, r.status) for r in results) == [
        ("checks/test_guest_one.py::test_one", Status.passed),
        ("checks/test_guest_two.py::test_two", Status.passed),
    ]


def test_a_file_that_does_not_import_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "test_guest_broken.py", "import goldsmith_no_such_module\n")

    results, _ = run_user_tests(FakeHost(), [path])

    (result,) = results
    assert result.status is Status.error
    assert result.id == "test_guest_broken.py"
    assert result.title == "collecting user tests"
    assert "goldsmith_no_such_module" in result.observed


def test_pytest_output_stays_off_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # stdout carries goldsmith's own results.
    path = write(tmp_path, "test_guest_quiet.py", "def test_ok(host):\n    pass\n")
    capsys.readouterr()

    run_user_tests(FakeHost(), [path])

    assert capsys.readouterr().out == ""


def test_a_missing_path_is_an_input_error(tmp_path: Path) -> None:
    present = write(tmp_path, "test_guest_present.py", "def test_ok(host):\n    pass\n")
    missing = tmp_path / "no-such-tests.py"

    with pytest.raises(InputError) as info:
        run_user_tests(FakeHost(), [present, missing])

    assert info.value.exit_code == 2
    assert info.value.path == missing
    assert str(missing) in info.value.message


def test_no_paths_run_nothing() -> None:
    assert run_user_tests(FakeHost(), []) == ([], 0.0)
