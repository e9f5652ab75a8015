"""Who goldsmith is to a registry, and which certificates it trusts there.

Credentials come from the environment (``GOLDSMITH_REGISTRY_USERNAME`` and
``..._PASSWORD``) or the docker config file; the CA bundle from ``--ca-file``
or ``$SSL_CERT_FILE``. validate/registry.py's client uses both.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path

from builder.errors import InputError
from hardening.strictdata import DataError, loads_json, read_regular

USERNAME_ENV = "GOLDSMITH_REGISTRY_USERNAME"
PASSWORD_ENV = "GOLDSMITH_REGISTRY_PASSWORD"


def credentials(host: str, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(username, password) for ``host``: the environment first, then the docker
    config file ($DOCKER_CONFIG/config.json or ~/.docker/config.json, its
    ``auths`` entry for the host). Credential helpers are not run."""
    env = os.environ if env is None else env
    user, password = env.get(USERNAME_ENV), env.get(PASSWORD_ENV)
    if user and password:
        return user, password
    if user or password:
        raise InputError(None, USERNAME_ENV, f"expected both {USERNAME_ENV} and {PASSWORD_ENV}")
    folder = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path.home() / ".docker"
    config = folder / "config.json"
    if not config.exists():
        return None
    try:
        doc = loads_json(read_regular(config, 1 << 20))
    except (OSError, DataError) as exc:
        raise InputError(config, None, f"cannot be read as a docker config ({exc})") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    entry = auths.get(host) if isinstance(auths, dict) else None
    if entry is None and isinstance(auths, dict):
        entry = auths.get(f"https://{host}") or auths.get(f"http://{host}")
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, _, password = (
                base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            )
        except (ValueError, UnicodeDecodeError):
            raise InputError(
                config, f"auths.{host}.auth", "expected base64 of user:password"
            ) from None
        return user, password
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return entry["username"], entry["password"]
    return None


def ca_bundle(ca_file: Path | None, env: Mapping[str, str] | None = None) -> str | bool:
    """What requests verifies the registry's certificate with: --ca-file, else
    $SSL_CERT_FILE (which requests itself ignores), else the system's bundle."""
    env = os.environ if env is None else env
    chosen = ca_file or (Path(env["SSL_CERT_FILE"]) if env.get("SSL_CERT_FILE") else None)
    if chosen is None:
        return True
    if not chosen.is_file():
        raise InputError(chosen, None, "expected a PEM file of CA certificates")
    return str(chosen)
