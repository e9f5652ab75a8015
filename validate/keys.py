"""Signing keys: Ed25519 by default, ECDSA P-256 where a KMS or HSM holds the key.

A key's id is the hex sha256 of its public key's SubjectPublicKeyInfo DER, the
same for a key however it is stored, so envelopes, policies and revocation lists
all name a key the same way.
"""

from __future__ import annotations

import dataclasses
import enum
import getpass
import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from builder.atomic import write_atomically
from builder.errors import InputError
from hardening.strictdata import DataError, read_regular

# The only channel for a passphrase besides an interactive prompt: an argument
# would land in shell history and in every process listing.
PASSPHRASE_ENV = "GOLDSMITH_KEY_PASSPHRASE"

PassphraseSource = Callable[[Path], str | None]

# A PEM key is a few hundred bytes; a larger file is not one, and a FIFO or a
# device (``--key /dev/zero``) must fail at once rather than hang or fill memory.
MAX_KEY_FILE = 64 * 1024

_PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
_PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


class KeyType(enum.StrEnum):
    ed25519 = "ed25519"
    p256 = "p256"


def compute_keyid(public_key: _PublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclasses.dataclass(frozen=True)
class PublicKey:
    key: _PublicKey
    type: KeyType
    keyid: str

    @classmethod
    def from_key(cls, key: _PublicKey) -> PublicKey:
        return cls(key, _key_type(key), compute_keyid(key))

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, data)
            else:
                self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def to_pem(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclasses.dataclass(frozen=True)
class PrivateKey:
    key: _PrivateKey

    @property
    def public(self) -> PublicKey:
        return PublicKey.from_key(self.key.public_key())

    @property
    def keyid(self) -> str:
        return self.public.keyid

    @property
    def type(self) -> KeyType:
        return self.public.type

    def sign(self, data: bytes) -> bytes:
        """Ed25519: the raw 64-byte signature; P-256: a DER ECDSA signature over SHA-256."""
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(data)
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    def to_pem(self, passphrase: str | None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
            if passphrase
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )


class SigningKey(Protocol):
    """A private key, in a file or in a token: whatever signs and names its public half."""

    @property
    def public(self) -> PublicKey: ...

    @property
    def keyid(self) -> str: ...

    @property
    def type(self) -> KeyType: ...

    def sign(self, data: bytes) -> bytes: ...


def generate_key(key_type: KeyType = KeyType.ed25519) -> PrivateKey:
    if key_type is KeyType.ed25519:
        return PrivateKey(ed25519.Ed25519PrivateKey.generate())
    return PrivateKey(ec.generate_private_key(ec.SECP256R1()))


def public_key_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")


def write_keypair(key: PrivateKey, out: Path, *, passphrase: str | None) -> tuple[Path, Path]:
    """Write the private key at ``out`` (mode 0600) and its public key at ``out``.pub.

    Neither file may exist already: overwriting a signing key loses it for good.
    """
    pub_path = public_key_path(out)
    for path in (out, pub_path):
        if os.path.lexists(path):
            raise InputError(path, None, "already exists; refusing to overwrite a key file")
    # The private key's file is made with mode 0600 from its creation, so it is
    # never readable by others, not even for the moment between create and chmod.
    write_key_file(out, key.to_pem(passphrase), 0o600)
    try:
        write_key_file(pub_path, key.public.to_pem(), 0o644)
    except BaseException:
        out.unlink()
        raise
    return out, pub_path


def write_key_file(path: Path, data: bytes, mode: int) -> None:
    """A new key file, whole or not at all, never over an existing file."""
    try:
        write_atomically(path, data, mode=mode, replace=False)
    except FileExistsError:
        raise InputError(path, None, "already exists; refusing to overwrite a key file") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot be created ({exc.strerror})") from None


def passphrase_from_env_or_tty(path: Path) -> str | None:
    """The passphrase for an encrypted key: the environment first, then the terminal."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if sys.stdin.isatty():
        return getpass.getpass(f"Passphrase for {path}: ")
    return None


def load_private_key(
    path: Path, passphrase: PassphraseSource = passphrase_from_env_or_tty
) -> PrivateKey:
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # Encrypted: only now ask for the passphrase.
        secret = passphrase(path)
        if not secret:
            raise InputError(
                path,
                None,
                "the private key is encrypted and no passphrase was given",
                hint=f"set {PASSPHRASE_ENV} or run on a terminal to be prompted",
            ) from None
        try:
            key = serialization.load_pem_private_key(data, password=secret.encode("utf-8"))
        except ValueError:
            raise InputError(
                path, None, "cannot decrypt the private key (wrong passphrase?)"
            ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(
            path, None, "expected a PEM private key (PKCS#8), e.g. from `goldsmith keygen`"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise InputError(path, None, f"expected an Ed25519 or P-256 key, found {_kind(key)}")
    _key_type(key.public_key(), path)
    return PrivateKey(key)


def load_public_key(path: Path) -> PublicKey:
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        hint = None
        if b"PRIVATE KEY" in data:
            hint = "a private key was given where its .pub is needed"
        raise InputError(
            path,
            None,
            "expected a PEM public key (SubjectPublicKeyInfo), e.g. the .pub from keygen",
            hint=hint,
        ) from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise InputError(path, None, f"expected an Ed25519 or P-256 key, found {_kind(key)}")
    return PublicKey(key, _key_type(key, path), compute_keyid(key))


def _read_key_file(path: Path) -> bytes:
    try:
        return read_regular(path, MAX_KEY_FILE)
    except FileNotFoundError:
        raise InputError(path, None, "key file not found") from None
    except DataError as exc:
        what = "a directory" if path.is_dir() else str(exc)
        raise InputError(path, None, f"key file is {what}; expected a PEM key file") from None
    except OSError as exc:
        raise InputError(path, None, f"key file cannot be read ({exc.strerror})") from None


def _key_type(key: _PublicKey, path: Path | None = None) -> KeyType:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyType.ed25519
    if isinstance(key.curve, ec.SECP256R1):
        return KeyType.p256
    raise InputError(path, None, f"expected an Ed25519 or P-256 key, found curve {key.curve.name}")


def _kind(key: object) -> str:
    return type(key).__name__.lstrip("_").removesuffix("PrivateKey").removesuffix("PublicKey")


def load_signing_key(
    ref: Path | str,
    passphrase: PassphraseSource = passphrase_from_env_or_tty,
    *,
    pin_env: str | None = None,
) -> SigningKey:
    """A key file, or a key in a PKCS#11 token named by a ``pkcs11:`` URI."""
    if str(ref).startswith("pkcs11:"):
        # Imported here: python-pkcs11 is loaded only when a token is used.
        from validate.pkcs11 import load_token_key

        return load_token_key(str(ref), pin_env=pin_env)
    return load_private_key(Path(ref), passphrase)
