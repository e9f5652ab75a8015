"""One-run credentials and the NoCloud seed ISO that hands them to a guest.

Each boot gets a fresh client key (for the one account goldsmith logs in
with) and a fresh SSH host key. The host key travels in the seed, so the
client knows it before connecting and pins it: nothing is trusted on first use.
"""

from __future__ import annotations

import dataclasses
import io
import secrets
from pathlib import Path
from typing import Any

import paramiko
import pycdlib
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

SEED_LABEL = "CIDATA"


@dataclasses.dataclass(frozen=True)
class KeyPair:
    private_openssh: str  # OpenSSH PEM; never logged, never written outside the work folder
    public_openssh: str  # "ssh-ed25519 AAAA... comment"

    @property
    def pkey(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key(io.StringIO(self.private_openssh))

    @property
    def blob(self) -> str:
        """The base64 key blob: what identifies this key in an authorized_keys line."""
        return self.public_openssh.split()[1]

    @property
    def fingerprint(self) -> str:
        return self.pkey.fingerprint  # "SHA256:..."


def generate_keypair(comment: str) -> KeyPair:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return KeyPair(private, f"{public.decode()} {comment}")


@dataclasses.dataclass(frozen=True)
class GuestAccess:
    """Everything needed to reach one boot of one guest."""

    run_id: str
    user: str
    client_key: KeyPair
    host_key: KeyPair


def new_access(user: str, purpose: str) -> GuestAccess:
    run_id = secrets.token_hex(6)
    return GuestAccess(
        run_id=run_id,
        user=user,
        client_key=generate_keypair(f"goldsmith-{purpose}-{run_id}"),
        host_key=generate_keypair(f"goldsmith-host-{run_id}"),
    )


def user_data(access: GuestAccess, *, hostname: str) -> dict[str, Any]:
    return {
        "users": [
            {
                "name": access.user,
                "gecos": "goldsmith one-run account",
                "shell": "/bin/bash",
                "lock_passwd": True,
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "ssh_authorized_keys": [access.client_key.public_openssh],
            }
        ],
        "disable_root": True,
        "ssh_pwauth": False,
        # Replace whatever host keys exist with exactly the one we pin; the
        # schema wants a non-empty list, and ed25519 already exists from ssh_keys.
        "ssh_deletekeys": True,
        "ssh_genkeytypes": ["ed25519"],
        "ssh_keys": {
            "ed25519_private": access.host_key.private_openssh,
            "ed25519_public": access.host_key.public_openssh,
        },
        "hostname": hostname,
        "growpart": {"mode": "auto", "devices": ["/"]},
        "resize_rootfs": True,
    }


def render_seed_files(access: GuestAccess, *, hostname: str) -> dict[str, bytes]:
    meta = {"instance-id": f"goldsmith-{access.run_id}", "local-hostname": hostname}
    body = yaml.safe_dump(user_data(access, hostname=hostname), sort_keys=False)
    return {
        "meta-data": yaml.safe_dump(meta, sort_keys=False).encode(),
        "user-data": ("#cloud-config\n" + body).encode(),
    }


def write_seed_iso(path: Path, files: dict[str, bytes]) -> None:
    """A NoCloud seed: an ISO 9660 volume labelled CIDATA with Rock Ridge and
    Joliet names, so cloud-init finds ``user-data`` and ``meta-data``."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=SEED_LABEL)
    try:
        for name, data in files.items():
            iso_name = "/" + name.replace("-", "").upper()[:8] + ".;1"
            iso.add_fp(io.BytesIO(data), len(data), iso_name, rr_name=name, joliet_path="/" + name)
        # The seed holds a private host key: readable by its owner only.
        path.touch(mode=0o600)
        with open(path, "r+b") as f:
            iso.write_fp(f)
    finally:
        iso.close()


def read_seed_iso(path: Path) -> dict[str, bytes]:
    """Read a seed back (by Rock Ridge names): for tests and diagnostics."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        files: dict[str, bytes] = {}
        for child in iso.list_children(rr_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.rock_ridge.name().decode()
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path="/" + name)
            files[name] = out.getvalue()
        return files
    finally:
        iso.close()


def volume_label(path: Path) -> str:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        return str(iso.pvd.volume_identifier.decode().strip())
    finally:
        iso.close()
