"""A signed local apt repository for the provisioning tests: one small package,
indexes from apt-ftparchive, InRelease signed by a throwaway gpg key, served
over HTTP on the host's loopback (QEMU's user network shows the host to a
guest as 10.0.2.2)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

GUEST_HOST = "10.0.2.2"


def _run(cmd: list[str], **kwargs: object) -> None:
    subprocess.run(cmd, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def build_package(folder: Path, name: str, version: str) -> Path:
    root = folder / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share" / name).mkdir(parents=True)
    (root / "usr/share" / name / "VERSION").write_text(version + "\n")
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: goldsmith tests <tests@goldsmith.invalid>\n"
        "Description: stand-in monitoring agent for goldsmith's provisioning tests\n"
    )
    deb = folder / f"{name}_{version}_all.deb"
    _run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)])
    return deb


def make_repo(folder: Path, *, signed: bool = True) -> Path:
    """``folder/repo`` (dists/stable/main, pool) holding example-agent; returns
    the armored public key's path (``folder/key.asc``), made either way so an
    unsigned repository can be offered with a key that signs nothing."""
    gnupg = folder / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    _run(
        [
            *("gpg", "--batch", "--passphrase", "", "--quick-gen-key"),
            *("goldsmith test repository <repo@goldsmith.invalid>", "ed25519", "sign", "1d"),
        ],
        env=env,
    )
    key = folder / "key.asc"
    with open(key, "wb") as f:
        subprocess.run(["gpg", "--armor", "--export"], check=True, stdout=f, env=env)
    repo = folder / "repo"
    pool = repo / "pool/main"
    pool.mkdir(parents=True)
    build_package(pool, "example-agent", "1.0.0")
    binary = repo / "dists/stable/main/binary-amd64"
    binary.mkdir(parents=True)
    with open(binary / "Packages", "wb") as f:
        subprocess.run(["apt-ftparchive", "packages", "pool"], cwd=repo, check=True, stdout=f)
    release = subprocess.run(
        [
            *("apt-ftparchive", "-o", "APT::FTPArchive::Release::Suite=stable"),
            *("-o", "APT::FTPArchive::Release::Codename=stable"),
            *("-o", "APT::FTPArchive::Release::Components=main"),
            *("-o", "APT::FTPArchive::Release::Architectures=amd64"),
            *("release", "dists/stable"),
        ],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout
    (repo / "dists/stable/Release").write_bytes(release)
    if signed:
        _run(
            [
                *("gpg", "--batch", "--yes", "--clearsign"),
                *("-o", str(repo / "dists/stable/InRelease"), str(repo / "dists/stable/Release")),
            ],
            env=env,
        )
    # gpg started an agent for this home: nothing of the test may outlive it.
    subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "gpg-agent"], check=False)
    return key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[int]:
    """Serve ``folder`` on 127.0.0.1 at a free port for the duration."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
