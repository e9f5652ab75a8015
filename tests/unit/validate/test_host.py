from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from builder.errors import GuestError
from builder.seed import GuestAccess, new_access
from builder.ssh import connect
from validate.host import PinnedParamikoBackend, pinned_host

# The in-process SSH server is shared with the builder's SSH tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builder"))
from paramiko_server import FakeGuest

USER = "gsvalidate"


def answer(command: str, channel: paramiko.Channel) -> int:
    channel.sendall(b"out: " + command.encode() + b"\n")
    channel.sendall_stderr(b"a warning\n")
    return 0


@pytest.fixture
def access() -> GuestAccess:
    return new_access(USER, "validate")


@pytest.fixture
def guest(access: GuestAccess) -> Iterator[FakeGuest]:
    with FakeGuest(access.host_key.pkey, USER, access.client_key.blob, answer) as guest:
        yield guest


@pytest.fixture
def client(access: GuestAccess, guest: FakeGuest) -> Iterator[paramiko.SSHClient]:
    client = connect(access, guest.port, timeout=5)
    yield client
    client.close()


def wait_inactive(client: paramiko.SSHClient) -> None:
    transport = client.get_transport()
    assert transport is not None
    deadline = time.monotonic() + 3
    while transport.is_active() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not transport.is_active()


def test_testinfra_runs_commands_over_the_pinned_connection(
    client: paramiko.SSHClient, guest: FakeGuest
) -> None:
    host = pinned_host(client, USER)

    result = host.run("stat -c %%a %s", "/etc/ssh/sshd config")

    # testinfra quotes the argument; the command reaches the guest as one string.
    assert guest.commands == ["stat -c %a '/etc/ssh/sshd config'"]
    assert result.rc == 0
    assert result.stdout == "out: stat -c %a '/etc/ssh/sshd config'\n"
    assert result.stderr == "a warning\n"
    assert guest.connections == 1


def test_the_backend_hands_out_the_client_it_was_given(client: paramiko.SSHClient) -> None:
    backend = PinnedParamikoBackend(client, USER)

    assert backend.client is client
    assert backend.host.user == USER
    assert backend.host.name == "127.0.0.1"


def test_the_client_is_refused_once_the_transport_is_inactive(
    client: paramiko.SSHClient, guest: FakeGuest
) -> None:
    backend = PinnedParamikoBackend(client, USER)
    guest.drop()
    wait_inactive(client)

    with pytest.raises(GuestError, match="dropped mid-run"):
        _ = backend.client


def test_a_run_after_the_connection_drops_fails_without_reconnecting(
    client: paramiko.SSHClient, guest: FakeGuest
) -> None:
    host = pinned_host(client, USER)
    assert host.run("true").rc == 0
    guest.drop()
    wait_inactive(client)

    with pytest.raises(GuestError):
        host.run("cat /etc/shadow")

    # testinfra's own backend would have opened a new, unpinned connection here.
    assert guest.connections == 1
    assert guest.commands == ["true"]


def test_deleting_the_client_to_reconnect_is_refused(
    client: paramiko.SSHClient, guest: FakeGuest
) -> None:
    backend = PinnedParamikoBackend(client, USER)

    with pytest.raises(GuestError, match="dropped mid-run"):
        del backend.client

    # Nothing was replaced and nothing new was dialled.
    assert backend.client is client
    assert guest.connections == 1


def test_a_client_that_never_connected_is_refused() -> None:
    backend = PinnedParamikoBackend(paramiko.SSHClient(), USER)

    with pytest.raises(GuestError):
        _ = backend.client
