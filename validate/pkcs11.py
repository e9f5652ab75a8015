"""Signing keys that live in a PKCS#11 token (an HSM, a smart card, SoftHSM).

A key is named by an RFC 7512 URI: ``pkcs11:token=release;object=goldsmith``
(``id=%01`` instead of, or beside, ``object``), with the module in the URI's
query (``?module-path=/usr/lib/softhsm/libsofthsm2.so``) or in
``$GOLDSMITH_PKCS11_MODULE``. The PIN comes from an environment variable
(``--pin-env VAR``, by default ``GOLDSMITH_PKCS11_PIN``); ``pin-value`` in the
URI works but is discouraged, since a URI ends up in shell history, CI logs
and process listings.

The private key never leaves the token: goldsmith asks the token to sign and
reads only the public half (EC_POINT and EC_PARAMS) to name the key and to
check each signature before it is written. Ed25519 keys sign with CKM_EDDSA;
P-256 keys with CKM_ECDSA over a SHA-256 digest made here (many tokens,
SoftHSM 2.6 among them, lack CKM_ECDSA_SHA256), the raw r||s turned into the
DER signature goldsmith's file keys make.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.parse
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from builder.errors import InputError
from builder.log import log
from validate.keys import KeyType, PublicKey

MODULE_ENV = "GOLDSMITH_PKCS11_MODULE"
PIN_ENV = "GOLDSMITH_PKCS11_PIN"
SCHEME = "pkcs11:"
_PATH_ATTRIBUTES = frozenset(
    {"token", "object", "id", "type", "manufacturer", "model", "serial", "slot-id"}
)
_QUERY_ATTRIBUTES = frozenset({"module-path", "module-name", "pin-value", "pin-source"})
# DER of the P-256 curve's OID (1.2.840.10045.3.1.7) as EC_PARAMS holds it.
_P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")
# Ed25519's EC_PARAMS: the OID 1.3.101.112, or the curve's name as a PrintableString.
_ED25519_PARAMS = (bytes.fromhex("06032b6570"), b"\x13\x0cedwards25519")


def is_pkcs11_uri(ref: object) -> bool:
    return str(ref).startswith(SCHEME)


@dataclasses.dataclass(frozen=True)
class Pkcs11Uri:
    token: str | None
    label: str | None  # the object attribute: the key's CKA_LABEL
    key_id: bytes | None  # the id attribute: CKA_ID
    module: str | None
    pin_value: str | None

    def __repr__(self) -> str:  # never show a PIN
        return f"Pkcs11Uri(token={self.token!r}, object={self.label!r}, id={self.key_id!r})"


def parse_uri(text: str, field: str = "--key") -> Pkcs11Uri:
    """An RFC 7512 URI naming one private key; InputError naming what is wrong."""
    if not text.startswith(SCHEME):
        raise InputError(None, field, "expected a pkcs11: URI")
    body, _, query = text[len(SCHEME) :].partition("?")
    path: dict[str, str] = {}
    for name, values in (("path", body.split(";")), ("query", query.split("&"))):
        allowed = _PATH_ATTRIBUTES if name == "path" else _QUERY_ATTRIBUTES
        for item in values:
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep or key not in allowed:
                raise InputError(
                    None,
                    field,
                    f"unknown or malformed pkcs11 URI attribute {key!r}; expected "
                    + ", ".join(sorted(allowed)),
                )
            if key in path:
                raise InputError(None, field, f"pkcs11 URI attribute {key!r} given twice")
            path[key] = value
    if "pin-source" in path:
        raise InputError(None, field, "pin-source is not supported; use --pin-env VAR")
    if "type" in path and path["type"] != "private":
        raise InputError(None, field, "expected type=private (the signing key)")
    label = _decode(path.get("object"), field)
    key_id = urllib.parse.unquote_to_bytes(path["id"]) if "id" in path else None
    if label is None and key_id is None:
        raise InputError(None, field, "expected object=LABEL or id=%XX in the pkcs11 URI")
    return Pkcs11Uri(
        token=_decode(path.get("token"), field),
        label=label,
        key_id=key_id,
        module=_decode(path.get("module-path"), field),
        pin_value=_decode(path.get("pin-value"), field),
    )


def _decode(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return urllib.parse.unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise InputError(None, field, "a pkcs11 URI attribute is not UTF-8") from None


_LIBRARIES: dict[str, Any] = {}


def _library(module: str) -> Any:
    """One loaded PKCS#11 module per path: a module is initialised once per process."""
    import pkcs11

    if module not in _LIBRARIES:
        if not os.path.isfile(module):
            raise InputError(module, None, "PKCS#11 module not found")
        try:
            _LIBRARIES[module] = pkcs11.lib(module)
        except (RuntimeError, pkcs11.PKCS11Error) as exc:
            raise InputError(module, None, f"cannot load the PKCS#11 module ({exc!r})") from None
    return _LIBRARIES[module]


class TokenKey:
    """A private key in a token; each signature is made in a session of its own."""

    def __init__(self, uri: Pkcs11Uri, module: str, pin: str, public: PublicKey) -> None:
        self._uri, self._module, self._pin = uri, module, pin
        self.public = public

    @property
    def keyid(self) -> str:
        return self.public.keyid

    @property
    def type(self) -> KeyType:
        return self.public.type

    def sign(self, data: bytes) -> bytes:
        import pkcs11

        with _session(self._uri, self._module, self._pin) as session:
            private = _find(session, self._uri, pkcs11.ObjectClass.PRIVATE_KEY)
            try:
                if self.type is KeyType.ed25519:
                    return bytes(private.sign(data, mechanism=pkcs11.Mechanism.EDDSA))
                raw = bytes(
                    private.sign(hashlib.sha256(data).digest(), mechanism=pkcs11.Mechanism.ECDSA)
                )
            except pkcs11.PKCS11Error as exc:
                raise InputError(None, "--key", f"the token refused to sign ({exc!r})") from None
        half = len(raw) // 2
        r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        return encode_dss_signature(r, s)


class _session:
    """A logged-in read-only session on the URI's token; token errors are InputErrors."""

    def __init__(self, uri: Pkcs11Uri, module: str, pin: str) -> None:
        self.uri, self.module, self.pin = uri, module, pin
        self.session: Any = None

    def __enter__(self) -> Any:
        import pkcs11

        lib = _library(self.module)
        try:
            token = lib.get_token(token_label=self.uri.token)
        except pkcs11.NoSuchToken:
            raise InputError(
                None, "--key", f"no PKCS#11 token labelled {self.uri.token!r}"
            ) from None
        except pkcs11.MultipleTokensReturned:
            raise InputError(None, "--key", "several tokens match; name one with token=") from None
        try:
            self.session = token.open(user_pin=self.pin)
        except pkcs11.PinIncorrect:
            raise InputError(None, "--pin-env", "the token refused the PIN") from None
        except pkcs11.PKCS11Error as exc:
            raise InputError(None, "--key", f"cannot log in to the token ({exc!r})") from None
        return self.session

    def __exit__(self, *exc: object) -> None:
        if self.session is not None:
            self.session.close()


def _find(session: Any, uri: Pkcs11Uri, object_class: Any) -> Any:
    import pkcs11

    try:
        return session.get_key(object_class=object_class, label=uri.label, id=uri.key_id)
    except pkcs11.NoSuchKey:
        what = "private key" if object_class is pkcs11.ObjectClass.PRIVATE_KEY else "public key"
        raise InputError(None, "--key", f"the token holds no {what} matching {uri!r}") from None
    except pkcs11.MultipleObjectsReturned:
        raise InputError(None, "--key", f"several keys match {uri!r}; add id= or object=") from None


def _octets(der: bytes) -> bytes:
    """The content of a DER OCTET STRING (how EC_POINT holds the point)."""
    if len(der) < 2 or der[0] != 0x04:
        return der  # some modules give the point bare
    length, start = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    return der[start : start + length]


def _public_key(session: Any, uri: Pkcs11Uri) -> PublicKey:
    import pkcs11

    public = _find(session, uri, pkcs11.ObjectClass.PUBLIC_KEY)
    params = bytes(public[pkcs11.Attribute.EC_PARAMS])
    point = _octets(bytes(public[pkcs11.Attribute.EC_POINT]))
    if params in _ED25519_PARAMS:
        return PublicKey.from_key(ed25519.Ed25519PublicKey.from_public_bytes(point))
    if params == _P256_PARAMS:
        return PublicKey.from_key(
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        )
    raise InputError(None, "--key", "the token's key is neither Ed25519 nor P-256")


def load_token_key(text: str, *, pin_env: str | None = None) -> TokenKey:
    """The key a pkcs11: URI names, with its public half read from the token."""
    uri = parse_uri(text)
    module = uri.module or os.environ.get(MODULE_ENV)
    if not module:
        raise InputError(
            None,
            "--key",
            f"expected module-path= in the pkcs11 URI or ${MODULE_ENV}",
            hint="e.g. /usr/lib/softhsm/libsofthsm2.so",
        )
    variable = pin_env or PIN_ENV
    pin = os.environ.get(variable) or None  # set but empty: no PIN given
    if pin is None and uri.pin_value is not None:
        log.warning("the PIN is in the pkcs11 URI (pin-value): prefer --pin-env VAR")
        pin = uri.pin_value
    if pin is None:
        raise InputError(None, "--pin-env", f"${variable} is not set; expected the token's PIN")
    with _session(uri, module, pin) as session:
        public = _public_key(session, uri)
    return TokenKey(uri, module, pin, public)
