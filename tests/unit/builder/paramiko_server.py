"""An SSH server inside the test process that stands in for a guest's sshd.

It presents one host key, accepts one client key for one user, and answers
each exec request with a handler, so the client side (pinning, streaming,
exit codes, dropped connections) is tested for real without booting a VM.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

# Writes the command's output to the channel and returns its exit status, or
# None to send no status (the connection went away mid-command).
Handler = Callable[[str, paramiko.Channel], int | None]


def reply(output: bytes, status: int = 0) -> Handler:
    """A handler that prints ``output`` and exits with ``status``."""

    def handle(command: str, channel: paramiko.Channel) -> int | None:
        channel.sendall(output)
        return status

    return handle


class _Interface(paramiko.ServerInterface):
    def __init__(self, guest: FakeGuest) -> None:
        self.guest = guest

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return self.guest.authenticate(username, key)

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session" and self.guest.allow_sessions:
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.guest.commands.append(command.decode())
        worker = threading.Thread(
            target=self.guest.answer, args=(command.decode(), channel), daemon=True
        )
        self.guest.threads.append(worker)
        worker.start()
        return True


class FakeGuest:
    """``with FakeGuest(...) as guest:`` listens on 127.0.0.1:``guest.port``."""

    def __init__(
        self,
        host_key: paramiko.PKey,
        user: str,
        client_key_blob: str,
        handler: Handler | None = None,
        *,
        refuse_auth: int = 0,
    ) -> None:
        self.host_key = host_key
        self.user = user
        self.client_key_blob = client_key_blob
        self.handler = handler or reply(b"")
        self.refuse_auth = refuse_auth  # refuse the first N correct logins (account not made yet)
        self.allow_sessions = True
        self.connections = 0
        self.logins = 0
        self.commands: list[str] = []
        self.transports: list[paramiko.Transport] = []
        self.threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._closing = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> FakeGuest:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        self.drop()
        for thread in self.threads:
            thread.join(timeout=5)

    def drop(self) -> None:
        """Cut every connection, as a guest that crashed or rebooted would."""
        for transport in self.transports:
            transport.close()

    def authenticate(self, username: str, key: paramiko.PKey) -> int:
        if username != self.user or key.get_base64() != self.client_key_blob:
            return AUTH_FAILED
        if self.logins < self.refuse_auth:
            self.logins += 1
            return AUTH_FAILED
        self.logins += 1
        return AUTH_SUCCESSFUL

    def answer(self, command: str, channel: paramiko.Channel) -> None:
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            status = self.handler(command, channel)
            if status is not None:
                channel.send_exit_status(status)
                # EOF, not close: a close can overtake the server's reply to the
                # exec request, which the client would take for a refused command.
                channel.shutdown_write()

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            self.transports.append(transport)
            worker = threading.Thread(target=self._serve, args=(transport,), daemon=True)
            self.threads.append(worker)
            worker.start()

    def _serve(self, transport: paramiko.Transport) -> None:
        # A client that refuses our host key ends the negotiation: expected.
        with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
            transport.start_server(server=_Interface(self))
