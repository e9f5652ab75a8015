"""testinfra over our own paramiko connection, with the guest's host key pinned.

testinfra's stock paramiko backend accepts unknown host keys with a warning
and, when a connection drops, silently reconnects that way. This backend
takes a connection that goldsmith opened with the pinned key and never
reconnects: a dropped connection is an error, not a new trust decision.
"""

from __future__ import annotations

from typing import Any

import paramiko
import testinfra.host
from testinfra.backend.paramiko import ParamikoBackend

from builder.errors import GuestError
from hardening.host import Host


class PinnedParamikoBackend(ParamikoBackend):  # type: ignore[misc]
    NAME = "goldsmith"

    def __init__(self, client: paramiko.SSHClient, user: str, **kwargs: Any) -> None:
        super().__init__(f"{user}@127.0.0.1", **kwargs)
        self._pinned_client = client

    @property
    def client(self) -> paramiko.SSHClient:
        transport = self._pinned_client.get_transport()
        if transport is None or not transport.is_active():
            raise GuestError("the SSH connection to the guest dropped mid-run")
        return self._pinned_client

    @client.deleter
    def client(self) -> None:
        raise GuestError("the SSH connection to the guest dropped mid-run")


def pinned_host(client: paramiko.SSHClient, user: str) -> Host:
    """A testinfra Host on an already authenticated, host-key-pinned client."""
    host: Host = testinfra.host.Host(PinnedParamikoBackend(client, user))
    return host
