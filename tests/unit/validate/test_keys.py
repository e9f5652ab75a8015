"""goldsmith keygen and key loading: file modes, encryption, keyids, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from builder.cli import cli
from builder.errors import InputError
from validate.keys import (
    KeyType,
    PrivateKey,
    compute_keyid,
    generate_key,
    load_private_key,
    load_public_key,
    write_keypair,
)


def spki_sha256(pub_path: Path) -> str:
    key = serialization.load_pem_public_key(pub_path.read_bytes())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def keygen(tmp_path: Path, *args: str, env: dict[str, str] | None = None, input: str = "") -> Any:
    return CliRunner().invoke(cli, ["keygen", *args], env=env or {}, input=input)


@pytest.mark.parametrize("key_type", ["ed25519", "p256"])
def test_keygen_writes_a_0600_key_and_prints_its_keyid(tmp_path: Path, key_type: str) -> None:
    out = tmp_path / "release.pem"
    result = keygen(tmp_path, "--type", key_type, str(out))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    pub = tmp_path / "release.pem.pub"
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    lines = result.stdout.splitlines()
    assert lines[0] == f"keyid: {spki_sha256(pub)}"
    assert lines[1] == f"private key: {out} ({key_type})"
    assert lines[2] == f"public key: {pub}"
    assert load_private_key(out).type is KeyType(key_type)
    assert load_public_key(pub).keyid == load_private_key(out).keyid
    assert "not encrypted" in result.stderr


def test_keygen_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        result = keygen(tmp_path, str(tmp_path / "k.pem"))
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    out.write_text("precious")
    result = keygen(tmp_path, str(out))
    assert result.exit_code == 2
    assert f"{out}: already exists; refusing to overwrite" in result.stderr
    assert out.read_text() == "precious"
    assert not (tmp_path / "k.pem.pub").exists()


def test_keygen_refuses_when_only_the_pub_exists(tmp_path: Path) -> None:
    (tmp_path / "k.pem.pub").write_text("old")
    result = keygen(tmp_path, str(tmp_path / "k.pem"))
    assert result.exit_code == 2
    assert not (tmp_path / "k.pem").exists()


def test_keygen_encrypts_with_the_environment_passphrase(tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    result = keygen(tmp_path, str(out), env={"GOLDSMITH_KEY_PASSPHRASE": "s3cret"})
    assert result.exit_code == 0, result.output
    assert "(ed25519, encrypted)" in result.stdout
    assert b"ENCRYPTED PRIVATE KEY" in out.read_bytes()
    with pytest.raises(InputError, match=r"encrypted and no passphrase was given"):
        load_private_key(out, lambda _p: None)
    with pytest.raises(InputError, match=r"wrong passphrase"):
        load_private_key(out, lambda _p: "guess")
    assert (
        load_private_key(out, lambda _p: "s3cret").keyid
        == load_public_key(tmp_path / "k.pem.pub").keyid
    )


def test_keygen_prompts_twice_for_a_passphrase(tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    result = keygen(tmp_path, "--passphrase-prompt", str(out), input="pw1\npw1\n")
    assert result.exit_code == 0, result.output
    assert "pw1" not in result.stdout
    load_private_key(out, lambda _p: "pw1")


def test_keygen_has_no_passphrase_argument(tmp_path: Path) -> None:
    result = keygen(tmp_path, "--passphrase", "x", str(tmp_path / "k.pem"))
    assert result.exit_code == 2
    assert not (tmp_path / "k.pem").exists()


def test_passphrase_never_reaches_the_key_file(tmp_path: Path) -> None:
    key = generate_key()
    write_keypair(key, tmp_path / "k.pem", passphrase="visible?")
    assert b"visible?" not in (tmp_path / "k.pem").read_bytes()


def test_keyid_is_sha256_of_the_spki_der() -> None:
    key = generate_key(KeyType.p256)
    der = key.public.key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key.keyid == hashlib.sha256(der).hexdigest() == compute_keyid(key.public.key)


def test_loading_a_private_key_as_public_hints_at_the_pub(tmp_path: Path) -> None:
    write_keypair(generate_key(), tmp_path / "k.pem", passphrase=None)
    with pytest.raises(InputError, match=r"expected a PEM public key") as caught:
        load_public_key(tmp_path / "k.pem")
    assert caught.value.hint is not None and ".pub" in caught.value.hint


def test_unsupported_key_types_are_refused(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "rsa.pem").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(InputError, match=r"expected an Ed25519 or P-256 key, found RSA"):
        load_private_key(tmp_path / "rsa.pem")
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    (tmp_path / "p384.pub").write_bytes(
        p384.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(InputError, match=r"found curve secp384r1"):
        load_public_key(tmp_path / "p384.pub")


def test_garbage_and_missing_key_files(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text(json.dumps({"not": "a key"}))
    with pytest.raises(InputError, match=r"junk: expected a PEM private key"):
        load_private_key(tmp_path / "junk")
    with pytest.raises(InputError, match=r"absent.pem: key file not found"):
        load_public_key(tmp_path / "absent.pem")


def test_signatures_verify_only_over_the_signed_bytes() -> None:
    for key_type in KeyType:
        key: PrivateKey = generate_key(key_type)
        sig = key.sign(b"message")
        assert key.public.verify(sig, b"message")
        assert not key.public.verify(sig, b"messagE")
        assert not key.public.verify(b"\x00" * len(sig), b"message")
