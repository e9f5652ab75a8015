"""An HTTP proxy for apt, taken from the host's environment like a secret.

A spec names the variable (``apt_proxy: {env_from_host: APT_PROXY}``), never
the URL: a proxy URL often carries credentials (``http://user:token@proxy:3128``).
The name is part of the spec and the build key and is recorded in build.json;
the value is read once from goldsmith's environment and then:

- the base bootstrap (mmdebstrap on the host) gets it as ``http_proxy`` and
  ``https_proxy`` in its environment, with QEMU's host alias 10.0.2.2 read as
  127.0.0.1 (``ProxyValue.host_url``: a proxy on the host serves both). Not
  ``--aptopt``: mmdebstrap writes apt options into the new tree's
  ``/etc/apt/apt.conf.d/99mmdebstrap``, which would carry the URL into the
  cached base and every template made from it;
- the build VM gets it as one apt configuration file, written through the SSH
  channel's stdin (the value is data, never shell text), removed by sealing
  (``builder.seal``) and searched for on the sealed disk's blocks by validation
  (``validate.blockscan``);
- log lines that would show it, or its password, are masked (``Session.redact``).

Hosts under ``direct`` (an internal apt repository reached without the proxy)
become apt's per-host ``DIRECT`` setting and the bootstrap's ``no_proxy``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from builder.errors import InputError
from builder.spec_values import valid_host

APT_CONF = "/etc/apt/apt.conf.d/00goldsmith-proxy"
MAX_PROXY_URL = 1024
# QEMU's user network: a build VM reaches the host's loopback at this address.
GUEST_HOST_ALIAS = "10.0.2.2"


@dataclasses.dataclass(frozen=True)
class AptProxy:
    """What the spec says: the variable's name, and the hosts apt reaches directly."""

    env_from_host: str
    direct: tuple[str, ...] = ()

    def record(self) -> dict[str, object]:
        """For the build key and build.json: names only."""
        return {"env_from_host": self.env_from_host, "direct": list(self.direct)}


@dataclasses.dataclass(frozen=True)
class ProxyValue:
    """The proxy URL read from the host, with what must be masked wherever it could show."""

    url: str
    direct: tuple[str, ...]

    @property
    def host_url(self) -> str:
        """The URL for a process on the host (the bootstrap). The value is
        written for the build VMs; a proxy they reach at QEMU's host alias
        (10.0.2.2) is the one QEMU connects to on the host's loopback, so the
        host reaches it at 127.0.0.1. Any other URL is the same for both."""
        parts = urlsplit(self.url)
        if parts.hostname != GUEST_HOST_ALIAS:
            return self.url
        userinfo, at, _ = parts.netloc.rpartition("@")
        port = f":{parts.port}" if parts.port is not None else ""
        return parts._replace(netloc=f"{userinfo}{at}127.0.0.1{port}").geturl()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The URL, and its password alone (apt or a log line may show a part of it)."""
        parts = urlsplit(self.url)
        found = [self.url, self.host_url]
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        return tuple(dict.fromkeys(s for s in found if s))

    def apt_conf(self) -> bytes:
        """apt.conf text. The URL was checked to hold no ``"``, ``\\``, ``;``,
        braces or whitespace, so it cannot end the quoted string it sits in;
        direct host names passed the spec's host-name rule."""
        lines = [
            "// Written by goldsmith for the build only; sealing removes this file.",
            f'Acquire::http::Proxy "{self.url}";',
            f'Acquire::https::Proxy "{self.url}";',
        ]
        for host in self.direct:
            lines.append(f'Acquire::http::Proxy::{host} "DIRECT";')
            lines.append(f'Acquire::https::Proxy::{host} "DIRECT";')
        return ("\n".join(lines) + "\n").encode()

    def environment(self) -> dict[str, str]:
        """For a host process (mmdebstrap): the proxy variables apt reads."""
        env = {"http_proxy": self.host_url, "https_proxy": self.host_url}
        if self.direct:
            env["no_proxy"] = ",".join(self.direct)
        return env


# Characters a proxy URL may not hold: apt.conf's string and statement syntax,
# and anything that would end a line.
_FORBIDDEN = set('"\\;{}') | {chr(c) for c in range(0x21)} | {chr(0x7F)}


def proxy_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an HTTP proxy URL, or None.

    The messages never repeat the value: it may hold a password.
    """
    expected = "expected an http:// or https:// proxy URL such as http://user:token@proxy:3128"
    if not value:
        return f"{expected}, got an empty value"
    if len(value) > MAX_PROXY_URL:
        return f"{expected} of at most {MAX_PROXY_URL} characters"
    if not value.isascii():
        return f"{expected} in ASCII (percent-encode anything else)"
    if any(c in _FORBIDDEN for c in value):
        return f"{expected} without whitespace, control characters, quotes, \\, ; or braces"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return f"{expected} with a valid port"
    if parts.scheme not in ("http", "https"):
        return expected
    # The host as a mirror's is checked: a name of letters, digits and
    # hyphens, or an IP address (IPv6 in brackets); userinfo is left aside.
    host_part = parts.netloc.rpartition("@")[2]
    if not valid_host(host_part, parts.hostname or "") or port == 0:
        return f"{expected} with a host name or address"
    if parts.path not in ("", "/") or parts.query or parts.fragment or "#" in value:
        return f"{expected} with no path, query or fragment"
    return None


def read_proxy(proxy: AptProxy | None, spec_path: Path) -> ProxyValue | None:
    """The proxy's value from goldsmith's environment; bad input if missing or malformed."""
    if proxy is None:
        return None
    field = "apt_proxy.env_from_host"
    value = os.environ.get(proxy.env_from_host)
    if value is None:
        raise InputError(
            spec_path, field, f"{proxy.env_from_host} is not set in goldsmith's environment"
        )
    problem = proxy_problem(value)
    if problem is not None:
        raise InputError(spec_path, field, f"{proxy.env_from_host}: {problem}")
    return ProxyValue(value, proxy.direct)
