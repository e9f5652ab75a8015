from __future__ import annotations

import logging
import shlex
import socket
import threading
import time
import types
from collections.abc import Iterator

import paramiko
import pytest
from paramiko_server import FakeGuest, Handler, reply

from builder import ssh
from builder.errors import BuildError, GuestError
from builder.seed import GuestAccess, generate_keypair, new_access
from builder.ssh import (
    HostKeyMismatchError,
    RunResult,
    Session,
    connect,
    retry_delay,
    wait_for_ssh,
)

USER = "gsbuild"


class Lines(logging.Handler):
    """Keeps each record, and sets ``seen`` once a message contains ``watch``."""

    def __init__(self, watch: str = "") -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.watch = watch
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if self.watch and self.watch in message:
            self.seen.set()


def output_logger(handler: Lines) -> logging.Logger:
    logger = logging.getLogger(f"goldsmith-test-ssh-{id(handler)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


@pytest.fixture
def access() -> GuestAccess:
    return new_access(USER, "test")


def guest_for(
    access: GuestAccess,
    handler: Handler | None = None,
    *,
    host_key: paramiko.PKey | None = None,
    refuse_auth: int = 0,
) -> FakeGuest:
    return FakeGuest(
        host_key or access.host_key.pkey,
        access.user,
        access.client_key.blob,
        handler,
        refuse_auth=refuse_auth,
    )


@pytest.fixture
def closed_port() -> Iterator[int]:
    # Bound but never listening: connections are refused at once.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """wait_for_ssh sleeps up to a second between attempts; tests need not."""
    fake_time = types.SimpleNamespace(monotonic=time.monotonic, sleep=lambda s: time.sleep(0.01))
    monkeypatch.setattr(ssh, "time", fake_time)


# --- the pinned host key ---------------------------------------------------


def test_connect_accepts_exactly_the_pinned_host_key(access: GuestAccess) -> None:
    with guest_for(access) as guest:
        client = connect(access, guest.port, timeout=5)
        try:
            transport = client.get_transport()
            assert transport is not None and transport.is_active()
            presented = transport.get_remote_server_key()
            assert presented.get_base64() == access.host_key.blob
            assert presented.fingerprint == access.host_key.fingerprint
            assert guest.logins == 1
        finally:
            client.close()


def test_a_different_host_key_of_the_same_type_is_refused(access: GuestAccess) -> None:
    impostor = generate_keypair("impostor")
    with guest_for(access, host_key=impostor.pkey) as guest:
        with pytest.raises(HostKeyMismatchError) as info:
            connect(access, guest.port, timeout=5)
        # The client never authenticated to the impostor.
        assert guest.logins == 0
    message = info.value.message
    assert impostor.fingerprint in message
    assert access.host_key.fingerprint in message
    assert "refusing to connect" in message


def test_a_host_key_of_another_type_is_refused(access: GuestAccess) -> None:
    impostor = paramiko.ECDSAKey.generate()
    with guest_for(access, host_key=impostor) as guest:
        with pytest.raises(HostKeyMismatchError) as info:
            connect(access, guest.port, timeout=5)
        assert guest.logins == 0
    assert impostor.fingerprint in info.value.message
    assert "refusing to connect" in info.value.message


def test_the_policy_for_unknown_host_keys_refuses() -> None:
    key = generate_keypair("stranger").pkey
    policy = ssh.RefuseUnknownHostKey()
    with pytest.raises(HostKeyMismatchError) as info:
        policy.missing_host_key(paramiko.SSHClient(), "[127.0.0.1]:2222", key)
    assert key.fingerprint in info.value.message
    assert "did not generate" in info.value.message


def test_a_host_key_mismatch_is_a_guest_error() -> None:
    # The CLI maps GuestError to its exit code; a mismatch must not escape as paramiko's.
    assert issubclass(HostKeyMismatchError, GuestError)


# --- wait_for_ssh -------------------------------------------------------------


def test_wait_for_ssh_does_not_retry_a_host_key_mismatch(access: GuestAccess) -> None:
    impostor = generate_keypair("impostor")
    with guest_for(access, host_key=impostor.pkey) as guest:
        start = time.monotonic()
        with pytest.raises(HostKeyMismatchError):
            wait_for_ssh(access, guest.port, timeout=60, alive=lambda: True, describe=str)
        elapsed = time.monotonic() - start
        assert guest.connections == 1
    # A retry would have slept 2 s first.
    assert elapsed < 1.5


def test_retries_back_off_from_a_quarter_second_to_one_second() -> None:
    assert [retry_delay(n) for n in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]


def test_wait_for_ssh_retries_until_the_account_accepts_the_key(
    access: GuestAccess, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_retries(monkeypatch)
    with guest_for(access, refuse_auth=2) as guest:
        client = wait_for_ssh(access, guest.port, timeout=30, alive=lambda: True, describe=str)
        try:
            transport = client.get_transport()
            assert transport is not None and transport.is_authenticated()
            assert guest.connections == 3
        finally:
            client.close()


def test_wait_for_ssh_stops_at_once_when_the_guest_is_gone(closed_port: int) -> None:
    calls: list[str] = []

    def alive() -> bool:
        calls.append("alive")
        return False

    start = time.monotonic()
    with pytest.raises(GuestError) as info:
        wait_for_ssh(
            new_access(USER, "test"),
            closed_port,
            timeout=600,
            alive=alive,
            describe=lambda: "serial: kernel panic",
        )
    assert time.monotonic() - start < 1
    assert calls == ["alive"]
    assert "stopped before SSH came up" in info.value.message
    assert "serial: kernel panic" in info.value.message


def test_wait_for_ssh_times_out_naming_the_last_failure(
    closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_retries(monkeypatch)
    start = time.monotonic()
    with pytest.raises(GuestError) as info:
        wait_for_ssh(
            new_access(USER, "test"),
            closed_port,
            timeout=0.3,
            alive=lambda: True,
            describe=lambda: "serial: still booting",
        )
    assert time.monotonic() - start < 2
    message = info.value.message
    assert f"127.0.0.1:{closed_port}" in message
    assert "last attempt: " in message and "no attempt yet" not in message
    assert message.endswith("serial: still booting")
    assert not isinstance(info.value, HostKeyMismatchError)


# --- Session.run -----------------------------------------------------------


def test_run_without_sudo_executes_the_command_and_returns_its_output(
    access: GuestAccess,
) -> None:
    lines = Lines()
    with guest_for(access, reply(b"Linux goldsmith 6.1.0\nsecond line\n")) as guest:
        session = Session(connect(access, guest.port, timeout=5), output_log=output_logger(lines))
        try:
            result = session.run("uname -a", step="identity", sudo=False)
        finally:
            session.close()
        assert guest.commands == ["uname -a"]
    assert result == RunResult(0, "Linux goldsmith 6.1.0\nsecond line\n") and result.ok
    assert lines.messages == ["  | Linux goldsmith 6.1.0", "  | second line"]


def test_run_streams_each_line_to_the_log_as_it_arrives(access: GuestAccess) -> None:
    lines = Lines(watch="first")

    def slow(command: str, channel: paramiko.Channel) -> int:
        channel.sendall(b"first\n")
        # Only a client that logs lines as they come can let this go on early.
        seen = lines.seen.wait(timeout=3)
        channel.sendall(f"streamed={seen}\n".encode())
        return 0

    with guest_for(access, slow) as guest:
        session = Session(connect(access, guest.port, timeout=5), output_log=output_logger(lines))
        try:
            result = session.run("apt-get -y install curl", step="packages", sudo=False)
        finally:
            session.close()
    assert result.output == "first\nstreamed=True\n"


def test_run_joins_lines_split_across_packets(access: GuestAccess) -> None:
    def chunked(command: str, channel: paramiko.Channel) -> int:
        for piece in (b"alp", b"ha\nbe", b"ta\r\n", b"gam", b"ma\n"):
            channel.sendall(piece)
            time.sleep(0.01)
        return 0

    lines = Lines()
    with guest_for(access, chunked) as guest:
        session = Session(connect(access, guest.port, timeout=5), output_log=output_logger(lines))
        try:
            result = session.run("true", step="split", sudo=False)
        finally:
            session.close()
    assert result.output == "alpha\nbeta\ngamma\n"
    assert lines.messages == ["  | alpha", "  | beta", "  | gamma"]


def test_run_merges_stderr_into_the_output(access: GuestAccess) -> None:
    def both(command: str, channel: paramiko.Channel) -> int:
        channel.sendall(b"to stdout\n")
        time.sleep(0.02)
        channel.sendall_stderr(b"to stderr\n")
        return 0

    with guest_for(access, both) as guest:
        session = Session(connect(access, guest.port, timeout=5))
        try:
            result = session.run("true", step="merge", sudo=False)
        finally:
            session.close()
    assert result.output == "to stdout\nto stderr\n"


def test_run_with_sudo_wraps_the_command_for_a_root_shell_without_a_password(
    access: GuestAccess,
) -> None:
    command = "cat /etc/machine-id && echo \"$HOME\" 'quoted'"
    with guest_for(access, reply(b"0123\n")) as guest:
        session = Session(connect(access, guest.port, timeout=5))
        try:
            session.run(command, step="identity")
        finally:
            session.close()
        sent = guest.commands[0]
    # -n: never prompt; the command reaches bash intact, whatever its quotes.
    assert shlex.split(sent) == ["sudo", "-n", "--", "bash", "-c", command]


def test_a_failing_command_raises_build_error_with_step_code_and_tail(
    access: GuestAccess,
) -> None:
    output = b"".join(f"output line {i:02d}\n".encode() for i in range(50))
    with guest_for(access, reply(output + b"E: Unable to locate package nope", 100)) as guest:
        session = Session(connect(access, guest.port, timeout=5))
        try:
            with pytest.raises(BuildError) as info:
                session.run("apt-get -y install nope", step="packages", sudo=False)
        finally:
            session.close()
    error = info.value
    assert "step 'packages' failed" in error.message
    assert "exited with 100" in error.message
    assert error.hint is not None
    assert error.hint.rstrip().endswith("E: Unable to locate package nope")
    # The tail is the last 40 lines: the earliest ones are left out.
    assert "output line 49" in error.hint and "output line 11" in error.hint
    assert "output line 10" not in error.hint
    assert "exited with 100" in error.diagnostics() and "last output:" in error.diagnostics()


def test_a_failing_command_with_check_off_returns_its_code(access: GuestAccess) -> None:
    with guest_for(access, reply(b"status: degraded\n", 2)) as guest:
        session = Session(connect(access, guest.port, timeout=5))
        try:
            result = session.run("cloud-init status --wait", step="cloud-init", check=False)
        finally:
            session.close()
    assert result == RunResult(2, "status: degraded\n") and not result.ok


def test_run_on_a_closed_connection_is_a_guest_error(access: GuestAccess) -> None:
    with guest_for(access) as guest:
        session = Session(connect(access, guest.port, timeout=5))
        session.close()
        with pytest.raises(GuestError, match="connection to the guest was lost"):
            session.run("true", step="after close", sudo=False)
        assert guest.commands == []


def test_a_connection_dropped_mid_command_is_a_guest_error(access: GuestAccess) -> None:
    guest = guest_for(access)

    def crash(command: str, channel: paramiko.Channel) -> None:
        channel.sendall(b"Setting up linux-image ...\n")
        time.sleep(0.05)
        guest.drop()

    guest.handler = crash
    with guest:
        session = Session(connect(access, guest.port, timeout=5))
        try:
            with pytest.raises(GuestError):
                session.run("apt-get -y dist-upgrade", step="upgrade", sudo=False)
        finally:
            session.close()


def test_a_last_line_without_newline_still_reaches_the_log(access: GuestAccess) -> None:
    lines = Lines()
    with guest_for(access, reply(b"done\nno newline at the end", 1)) as guest:
        session = Session(connect(access, guest.port, timeout=5), output_log=output_logger(lines))
        try:
            result = session.run("false", step="tail", sudo=False, check=False)
        finally:
            session.close()
    assert result == RunResult(1, "done\nno newline at the end")
    assert lines.messages == ["  | done", "  | no newline at the end"]
