from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.errors import ToolError
from builder.log import log
from builder.run import PACKAGES, build_environment, find_program, program_path, run


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    level = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield handler
    log.removeHandler(handler)
    log.setLevel(level)


# --- finding programs ------------------------------------------------------


def test_a_missing_program_names_its_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None)

    with pytest.raises(ToolError) as info:
        run(["qemu-img", "info", "disk.qcow2"])

    error = info.value
    assert error.message == "qemu-img not found"
    assert error.hint is not None
    assert "qemu-utils" in error.hint and "apt-get install qemu-utils" in error.hint
    assert error.exit_code == 1


def test_every_known_program_maps_to_a_package() -> None:
    assert PACKAGES["qemu-system-x86_64"] == "qemu-system-x86"
    assert PACKAGES["ssh-keygen"] == "openssh-client"
    assert PACKAGES["mkfs.ext4"] == "e2fsprogs"


def test_an_unknown_missing_program_is_its_own_package_hint() -> None:
    with pytest.raises(ToolError) as info:
        find_program("goldsmith-no-such-program")
    assert info.value.message == "goldsmith-no-such-program not found"
    assert info.value.hint is not None
    assert "apt-get install goldsmith-no-such-program" in info.value.hint


def test_find_program_returns_the_full_path() -> None:
    assert find_program("bash") == shutil.which("bash")


# --- running ---------------------------------------------------------------


def test_run_captures_stdout_as_text() -> None:
    proc = run(["bash", "-c", "printf 'one\\ntwo\\n'"])
    assert proc.returncode == 0
    assert proc.stdout == "one\ntwo\n"
    assert proc.stderr == ""


def test_a_failing_command_names_program_arguments_code_and_stderr_tail() -> None:
    script = 'for i in $(seq 1 15); do echo "problem $i" >&2; done; echo ignored; exit 3'

    with pytest.raises(ToolError) as info:
        run(["bash", "-c", script])

    message = info.value.message
    first = message.splitlines()[0]
    # The program by name, not by its full path, and its arguments shell-quoted.
    assert first.startswith("bash -c '")
    assert first.endswith("' failed with exit code 3")
    # The last ten lines of stderr, not stdout.
    assert message.splitlines()[1:] == [f"  problem {i}" for i in range(6, 16)]


def test_a_failing_command_without_stderr_shows_its_stdout() -> None:
    with pytest.raises(ToolError) as info:
        run(["bash", "-c", "echo 'only on stdout'; exit 4"])
    assert "exit code 4" in info.value.message
    assert info.value.message.endswith("only on stdout")


def test_check_off_returns_the_failure_instead_of_raising() -> None:
    proc = run(["bash", "-c", "echo nope >&2; exit 5"], check=False)
    assert proc.returncode == 5
    assert proc.stderr == "nope\n"


def test_the_locale_is_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")

    proc = run(["bash", "-c", 'echo "LANG=$LANG LC_ALL=${LC_ALL-unset}"'])

    # Tool output is parsed; a translated message must not break that.
    assert proc.stdout == "LANG=C.UTF-8 LC_ALL=unset\n"


def test_extra_environment_is_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDSMITH_TEST_SECRET", "hunter2")
    proc = run(
        ["bash", "-c", 'echo "$GOLDSMITH_TEST_EXTRA ${GOLDSMITH_TEST_SECRET-unset}"'],
        env={"GOLDSMITH_TEST_EXTRA": "given"},
    )
    assert proc.stdout == "given unset\n"


def test_the_child_sees_only_the_environment_built_for_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        monkeypatch.delenv(name)
    monkeypatch.setenv("GOLDSMITH_TEST_SECRET", "hunter2")
    monkeypatch.setenv("LD_PRELOAD", "/tmp/evil.so")
    monkeypatch.setenv("APT_CONFIG", "/tmp/apt.conf")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    passed = {
        "HOME": "/home/builder",
        "TMPDIR": str(tmp_path),
        "http_proxy": "http://proxy:3128",
        "https_proxy": "http://proxy:3128",
        "no_proxy": "localhost",
        "HTTP_PROXY": "http://PROXY:3128",
        "HTTPS_PROXY": "http://PROXY:3128",
        "NO_PROXY": "LOCALHOST",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    }
    for name, value in passed.items():
        monkeypatch.setenv(name, value)

    proc = run(["env", "-0"], env={"GOLDSMITH_STEP_TOKEN": "given"})

    seen = dict(item.split("=", 1) for item in proc.stdout.split("\0") if item)
    assert seen == {
        **passed,
        "LANG": "C.UTF-8",
        "PATH": program_path(),
        "GOLDSMITH_STEP_TOKEN": "given",
    }


def test_the_path_is_fixed_with_the_interpreters_folder_last() -> None:
    beside = str(Path(sys.executable).parent)
    folders = program_path().split(":")
    system = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    assert folders[: len(system)] == system
    assert folders[-1] == beside and len(folders) == len(set(folders))


def test_the_callers_env_overrides_what_was_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/root")
    built = build_environment({"HOME": "/tmp/step", "LANG": "C"})
    assert built["HOME"] == "/tmp/step" and built["LANG"] == "C"
    assert build_environment()["HOME"] == "/root"


def test_programs_are_found_on_the_fixed_path_not_the_callers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    impostor = tmp_path / "qemu-img"
    impostor.write_text("#!/bin/sh\necho impostor\n")
    impostor.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    found = shutil.which("qemu-img", path=program_path())
    if found is None:
        with pytest.raises(ToolError, match="qemu-img not found"):
            find_program("qemu-img")
    else:
        assert find_program("qemu-img") == found != str(impostor)


def test_stdin_is_closed() -> None:
    # A program that reads stdin must see EOF at once, never wait on a terminal.
    proc = run(["bash", "-c", "cat; echo end"], timeout=5)
    assert proc.stdout == "end\n"


def test_input_is_fed_to_stdin() -> None:
    proc = run(["cat"], input=b"seed data\n")
    assert proc.stdout == "seed data\n"


def test_cwd_is_honoured(tmp_path: Path) -> None:
    proc = run(["pwd"], cwd=tmp_path)
    assert Path(proc.stdout.strip()).resolve() == tmp_path.resolve()


def test_a_timeout_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match=r"^sleep did not finish within 0s$"):
        run(["sleep", "5"], timeout=0.2)


def test_paths_are_accepted_as_arguments(tmp_path: Path) -> None:
    target = tmp_path / "a file"
    target.write_text("content\n")
    assert run(["cat", target]).stdout == "content\n"


def test_the_command_is_logged_shell_quoted_with_its_full_path(records: Records) -> None:
    run(["bash", "-c", "true", "two words"])
    bash = shutil.which("bash")
    assert f"+ {bash} -c true 'two words'" in records.messages
