"""A real HTTP proxy with basic auth for the build VMs: Debian's tinyproxy on
the host's loopback (the guest reaches it as 10.0.2.2), so a build that names
an apt proxy downloads through it with credentials, and the test can tell
from its log that it did."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from aptrepo import GUEST_HOST, free_port

USER = "gsproxy"


@dataclasses.dataclass(frozen=True)
class Proxy:
    port: int
    token: str
    log: Path

    @property
    def guest_url(self) -> str:
        """The URL a build VM uses, credentials included (the host secret)."""
        return f"http://{USER}:{self.token}@{GUEST_HOST}:{self.port}"

    @property
    def host_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serve_proxy(folder: Path, token: str) -> Iterator[Proxy]:
    """tinyproxy on 127.0.0.1 at a free port, refusing requests without the token."""
    program = shutil.which("tinyproxy")
    assert program, "tinyproxy is not installed (make deps installs it)"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "tinyproxy.log"
    conf = folder / "tinyproxy.conf"
    conf.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 64\n"
        f'LogFile "{log}"\nLogLevel Info\nPidFile "{folder / "tinyproxy.pid"}"\n'
        f"BasicAuth {USER} {token}\nConnectPort 443\n"
    )
    proc = subprocess.Popen(
        [program, "-d", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "tinyproxy.stderr").open("wb"),
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert proc.poll() is None, (folder / "tinyproxy.stderr").read_text()
            assert time.monotonic() < deadline, "tinyproxy did not listen within 20 s"
            time.sleep(0.1)
        yield Proxy(port, token, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
