from __future__ import annotations

import base64
import hashlib
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.seed import (
    SEED_LABEL,
    GuestAccess,
    generate_keypair,
    new_access,
    read_seed_iso,
    render_seed_files,
    user_data,
    volume_label,
    write_seed_iso,
)


@pytest.fixture(scope="module")
def access() -> GuestAccess:
    return new_access("gsbuild", "build")


def cloud_config(access: GuestAccess) -> dict[str, Any]:
    text = render_seed_files(access, hostname="debian-12-baseline")["user-data"].decode()
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


# --- keys ---------------------------------------------------------------------


def test_a_keypair_is_in_openssh_formats() -> None:
    pair = generate_keypair("goldsmith-test")

    assert pair.private_openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert pair.private_openssh.rstrip().endswith("-----END OPENSSH PRIVATE KEY-----")
    kind, blob, comment = pair.public_openssh.split(" ")
    assert (kind, comment) == ("ssh-ed25519", "goldsmith-test")
    assert pair.blob == blob
    # The wire format of an Ed25519 public key: its type name, then 32 bytes.
    raw = base64.b64decode(blob)
    assert raw[:15] == b"\x00\x00\x00\x0bssh-ed25519"
    assert len(raw) == 4 + 11 + 4 + 32


def test_the_private_key_matches_the_public_key() -> None:
    pair = generate_keypair("c")
    assert pair.pkey.get_name() == "ssh-ed25519"
    assert pair.pkey.get_base64() == pair.blob


def test_the_fingerprint_is_openssh_sha256() -> None:
    pair = generate_keypair("c")
    digest = hashlib.sha256(base64.b64decode(pair.blob)).digest()
    expected = "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    assert pair.fingerprint == expected


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed")
def test_ssh_keygen_agrees_on_the_fingerprint(tmp_path: Path) -> None:
    pair = generate_keypair("agree")
    public = tmp_path / "key.pub"
    public.write_text(pair.public_openssh + "\n")
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(public)], capture_output=True, text=True, check=True
    ).stdout
    assert out.split()[1] == pair.fingerprint
    assert out.split()[-1] == "(ED25519)"


def test_each_keypair_is_new() -> None:
    assert generate_keypair("c").blob != generate_keypair("c").blob


def test_access_holds_two_distinct_keys_named_for_the_run() -> None:
    access = new_access("gsvalidate", "validate")

    assert len(access.run_id) == 12 and int(access.run_id, 16) >= 0
    assert access.user == "gsvalidate"
    assert access.client_key.public_openssh.endswith(f" goldsmith-validate-{access.run_id}")
    assert access.host_key.public_openssh.endswith(f" goldsmith-host-{access.run_id}")
    assert access.client_key.blob != access.host_key.blob
    assert new_access("gsvalidate", "validate").run_id != access.run_id


# --- user-data and meta-data -------------------------------------------------


def test_user_data_creates_exactly_one_user_with_the_client_key(access: GuestAccess) -> None:
    users = cloud_config(access)["users"]

    # No "default" entry: the image's stock account is not created.
    assert len(users) == 1
    (user,) = users
    assert user["name"] == "gsbuild"
    assert user["ssh_authorized_keys"] == [access.client_key.public_openssh]
    assert user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert user["lock_passwd"] is True
    assert "passwd" not in user and "plain_text_passwd" not in user
    assert user["shell"] == "/bin/bash"


def test_user_data_installs_only_the_pinned_host_key(access: GuestAccess) -> None:
    data = cloud_config(access)

    assert data["ssh_keys"] == {
        "ed25519_private": access.host_key.private_openssh,
        "ed25519_public": access.host_key.public_openssh,
    }
    assert data["ssh_deletekeys"] is True
    # cloud-init generates a listed type only when no key of that type exists, so
    # listing only the type we supply generates nothing.
    supplied = {name.split("_")[0] for name in data["ssh_keys"]}
    assert data["ssh_genkeytypes"] == ["ed25519"]
    assert set(data["ssh_genkeytypes"]) <= supplied
    assert data["ssh_pwauth"] is False
    assert data["disable_root"] is True
    # The client's private key stays with goldsmith.
    text = render_seed_files(access, hostname="h")["user-data"].decode()
    assert access.client_key.private_openssh not in text


def test_user_data_sets_the_hostname(access: GuestAccess) -> None:
    assert cloud_config(access)["hostname"] == "debian-12-baseline"
    assert user_data(access, hostname="other")["hostname"] == "other"


def test_meta_data_names_the_instance_after_the_run(access: GuestAccess) -> None:
    meta = yaml.safe_load(render_seed_files(access, hostname="tmpl")["meta-data"])
    assert access.run_id in meta["instance-id"]
    assert meta["instance-id"] == f"goldsmith-{access.run_id}"
    assert meta["local-hostname"] == "tmpl"


# --- the ISO ------------------------------------------------------------------


def test_the_seed_iso_reads_back_with_its_label(tmp_path: Path, access: GuestAccess) -> None:
    files = render_seed_files(access, hostname="tmpl")
    path = tmp_path / "seed.iso"

    write_seed_iso(path, files)

    assert volume_label(path) == SEED_LABEL == "CIDATA"
    assert read_seed_iso(path) == files
    # ISO 9660 volumes come in 2 KiB sectors.
    assert path.stat().st_size % 2048 == 0


def test_the_seed_iso_is_readable_by_its_owner_only(tmp_path: Path, access: GuestAccess) -> None:
    path = tmp_path / "seed.iso"
    write_seed_iso(path, render_seed_files(access, hostname="tmpl"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(shutil.which("blkid") is None, reason="blkid is not installed")
def test_blkid_finds_the_label_cloud_init_looks_for(tmp_path: Path, access: GuestAccess) -> None:
    # cloud-init's NoCloud source finds its seed by filesystem label through blkid.
    path = tmp_path / "seed.iso"
    write_seed_iso(path, render_seed_files(access, hostname="tmpl"))
    out = subprocess.run(
        ["blkid", "-p", "-o", "export", str(path)], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert fields["TYPE"] == "iso9660"
    assert fields["LABEL"] == "CIDATA"
