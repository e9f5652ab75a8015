"""A Debian mirror's package indexes: fetched with bounds, and parsed.

``goldsmith outdated`` compares a template's installed packages with the
``main/binary-amd64`` Packages index of its suite, the suite's -updates and its
-security. The indexes are fetched without checking the mirror's Release
signature. At worst a hostile mirror hides an update or invents one, which
delays or forces a rebuild; the rebuild itself installs packages through apt,
which does check signatures. What a mirror sends is bounded all the same: in
bytes (compressed and decompressed) and in time.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import lzma
import time
import urllib.error
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, cast

from builder.base import open_url
from builder.errors import GoldsmithError, InputError
from builder.log import log
from builder.spec_values import suite_problem, url_problem
from hardening.strictdata import escape
from validate.results import Package

ARCHITECTURE = "amd64"
# bookworm's main Packages index is about 45 MB uncompressed; a mirror that sends
# far more is broken or hostile, and is not decompressed further.
MAX_INDEX_BYTES = 512 * 1024 * 1024
HTTP_TIMEOUT = 60
# The longest one index (all its variants) may take, however slowly a mirror
# trickles bytes: each read also waits at most HTTP_TIMEOUT.
INDEX_DEADLINE = 600
# Tried in this order; the first one the mirror has is used.
INDEX_VARIANTS = ("Packages.xz", "Packages.gz", "Packages")


class MirrorError(GoldsmithError):
    """The package mirror could not be read, so the answer is unknown (exit code 3)."""

    exit_code = 3


@dataclasses.dataclass(frozen=True)
class PackageSource:
    """Where a template's packages come from: a suite on a mirror and its security mirror."""

    suite: str
    mirror: str
    security_mirror: str

    def indexes(self) -> tuple[tuple[str, str], ...]:
        """(mirror, suite) for the release, its -updates and its -security."""
        return (
            (self.mirror, self.suite),
            (self.mirror, f"{self.suite}-updates"),
            (self.security_mirror, f"{self.suite}-security"),
        )


def check_source(source: PackageSource) -> None:
    """A mirror and suite given on the command line obey the spec's rules: the
    suite becomes part of a URL path, the mirrors are fetched from."""
    problem = suite_problem(source.suite)
    if problem is not None:
        raise InputError(None, "--suite", problem)
    for option, url in (("--mirror", source.mirror), ("--security-mirror", source.security_mirror)):
        problem = url_problem(url)
        if problem is not None:
            raise InputError(None, option, problem)


def index_url(mirror: str, suite: str, variant: str) -> str:
    return f"{mirror.rstrip('/')}/dists/{suite}/main/binary-{ARCHITECTURE}/{variant}"


def parse_packages(lines: Iterable[str], names: frozenset[str] | None = None) -> Iterator[Package]:
    """Package, Version and Architecture of each stanza of a Packages index."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            if fields:
                yield from _stanza(fields, names)
            fields = {}
            continue
        if line[0] in " \t":  # a continuation line (descriptions): not a field we read
            continue
        key, sep, value = line.partition(":")
        if sep and key in ("Package", "Version", "Architecture"):
            fields[key] = value.strip()
    if fields:
        yield from _stanza(fields, names)


def _stanza(fields: Mapping[str, str], names: frozenset[str] | None) -> Iterator[Package]:
    name = fields.get("Package")
    version = fields.get("Version")
    if name and version and (names is None or name in names):
        yield Package(name, version, fields.get("Architecture", ""))


class _Limited(io.RawIOBase):
    """A stream that refuses to yield more than ``limit`` bytes or to go on
    past ``deadline`` (time.monotonic()). Wrapped around the response (a
    compressed index of endless empty gzip members yields nothing, forever)
    and around the decompressed text (a small bomb yields gigabytes)."""

    def __init__(self, stream: IO[bytes], limit: int, url: str, deadline: float) -> None:
        self.stream, self.left, self.url, self.deadline = stream, limit, url, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if time.monotonic() > self.deadline:
            raise MirrorError(f"{self.url}: index not read within {INDEX_DEADLINE}s")
        data = self.stream.read(min(len(buffer), self.left + 1))
        if len(data) > self.left:
            raise MirrorError(f"{self.url}: index larger than {MAX_INDEX_BYTES} bytes")
        self.left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def _open_index(body: IO[bytes], variant: str) -> IO[bytes]:
    if variant.endswith(".xz"):
        return lzma.open(body)
    if variant.endswith(".gz"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=body))
    return body


def fetch_index(
    mirror: str, suite: str, names: frozenset[str] | None = None
) -> list[Package] | None:
    """The packages of one suite's main/binary-amd64 index; None if the mirror has none.

    Bounded: at most MAX_INDEX_BYTES read and decompressed, at most
    INDEX_DEADLINE seconds for all variants, redirects to http(s) only.
    """
    deadline = time.monotonic() + INDEX_DEADLINE
    for variant in INDEX_VARIANTS:
        url = index_url(mirror, suite, variant)
        log.debug("fetching %s", url)
        timeout = max(1.0, min(HTTP_TIMEOUT, deadline - time.monotonic()))
        try:
            with open_url(url, timeout=timeout) as response:
                body = _Limited(response, MAX_INDEX_BYTES, url, deadline)
                raw = _open_index(cast(IO[bytes], io.BufferedReader(body)), variant)
                text = io.TextIOWrapper(
                    io.BufferedReader(_Limited(raw, MAX_INDEX_BYTES, url, deadline)),
                    encoding="utf-8",
                    errors="replace",
                )
                return list(parse_packages(text, names))
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404, 410):
                continue
            reason = escape(str(exc.reason), 80)
            raise MirrorError(f"{url}: HTTP {exc.code} {reason}") from exc
        except (lzma.LZMAError, gzip.BadGzipFile, zlib.error, EOFError) as exc:
            raise MirrorError(f"{url}: not a valid {variant} file ({exc})") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = escape(str(getattr(exc, "reason", exc)), 160)
            raise MirrorError(
                f"cannot read the package index {url}: {reason}",
                hint="check the mirror in the spec, or the network",
            ) from exc
    return None
