"""A digest-addressed cache for base images and downloads.

Entries are folders named by a digest. An entry is made in a temporary folder
beside it and renamed into place, under an exclusive lock, so concurrent
builds never see or write half an entry.

``GOLDSMITH_CACHE`` is that folder, or ``oci://host[:port]/repository``: a
registry that CI runners share entries through, tagged ``<kind>-<key>``, with
the local folder (``$XDG_CACHE_HOME/goldsmith``) as the working copy. On a
local miss the entry is pulled into a temporary folder, every file's digest
checked while it streams, then judged whole, and only then renamed into
place; after an entry is made here it is pushed. A cache is an optimisation:
an unreachable registry is a warning, and an entry that fails a check is
refused loudly; either way the caller makes the entry itself.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.errors import GoldsmithError, InputError
from builder.log import log
from hardening.strictdata import escape

if TYPE_CHECKING:
    from validate.oci_manifest import Descriptor
    from validate.registry import RegistryClient

# Reads this large keep per-call overhead negligible while the buffer stays in cache.
HASH_CHUNK = 1 << 20

CACHE_ENV = "GOLDSMITH_CACHE"
CACHE_CA_ENV = "GOLDSMITH_CACHE_CA_FILE"
CACHE_URL_FORMAT = (
    "a folder or oci://host[:port]/repository (oci+http:// for plain HTTP to a loopback host)"
)
CACHE_ARTIFACT_TYPE = "application/vnd.goldsmith.cache.v1"
CACHE_FILE_MEDIA_TYPE = "application/vnd.goldsmith.cache.file.v1"
KEY_ANNOTATION = "dev.goldsmith.cache.key"
KIND_ANNOTATION = "dev.goldsmith.cache.kind"
# No cached file is larger (a base's disk is 2 GiB of virtual size): a
# manifest naming more is refused before a byte is written.
MAX_CACHED_FILE = 64 << 30
_KEY = re.compile(r"[0-9a-f]{64}")


class CacheEntryError(GoldsmithError):
    """An entry from the registry cache is not what its key asks for."""


def cache_root() -> Path:
    """The local cache folder: $GOLDSMITH_CACHE when it is a folder, else
    $XDG_CACHE_HOME/goldsmith or ~/.cache/goldsmith (also the working copy
    of a registry cache)."""
    env = os.environ.get(CACHE_ENV)
    if env and registry_cache() is None:
        root = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "goldsmith"
    root.mkdir(parents=True, exist_ok=True)
    return root


# --- the registry cache ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RegistryCache:
    """Where GOLDSMITH_CACHE=oci://... shares entries."""

    host: str  # with its port, if any
    repository: str
    plain_http: bool = False
    ca_file: Path | None = None

    def __str__(self) -> str:
        return f"{'oci+http' if self.plain_http else 'oci'}://{self.host}/{self.repository}"

    def client(self, env: Mapping[str, str] | None) -> RegistryClient:
        from validate.oci_reference import parse_reference
        from validate.registry import RegistryClient

        ref = parse_reference(f"{self.host}/{self.repository}", field=CACHE_ENV)
        return RegistryClient(ref, plain_http=self.plain_http, ca_file=self.ca_file, env=env)


def registry_cache(env: Mapping[str, str] | None = None) -> RegistryCache | None:
    """The registry GOLDSMITH_CACHE names, or None when it names a folder
    (or nothing). Anything with ``://`` is read as a registry, strictly."""
    env = os.environ if env is None else env
    value = env.get(CACHE_ENV, "")
    if "://" not in value:
        return None
    from validate.oci_reference import parse_reference

    def bad(why: str) -> InputError:
        return InputError(
            None, CACHE_ENV, f"expected {CACHE_URL_FORMAT}, got {escape(repr(value), 300)}: {why}"
        )

    scheme, _, rest = value.partition("://")
    if scheme not in ("oci", "oci+http"):
        raise bad("the scheme is oci or oci+http")
    try:
        ref = parse_reference(rest.rstrip("/"), field=CACHE_ENV)
    except InputError:
        raise bad("a registry host, then lower-case path components") from None
    if ref.tag is not None or ref.digest is not None:
        raise bad("no tag or digest, entries are tagged by their keys")
    plain_http = scheme == "oci+http"
    # Over plain HTTP anyone on the path could serve the manifest and the
    # blobs it names, digests and all, and so choose the base of every build:
    # only a registry on this machine's loopback goes without TLS.
    if plain_http and not _is_loopback(ref.host):
        raise bad("plain HTTP only to 127.0.0.1, [::1] or localhost; elsewhere oci:// (TLS)")
    ca_file = None
    if env.get(CACHE_CA_ENV):
        ca_file = Path(env[CACHE_CA_ENV])
        if not ca_file.is_file():
            raise InputError(
                None,
                CACHE_CA_ENV,
                f"expected a PEM file of CA certificates, got {escape(repr(str(ca_file)), 300)}",
            )
    return RegistryCache(ref.host, ref.path, plain_http, ca_file)


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.removeprefix("[").removesuffix("]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def entry_tag(kind: str, key: str) -> str:
    """The tag an entry is shared under: its kind and its key."""
    if _KEY.fullmatch(key) is None:
        raise ValueError(f"a cache key is 64 hex digits, not {key!r}")
    return f"{kind}-{key}"


def fetch_entry(
    final: Path,
    kind: str,
    names: Sequence[str],
    check: Callable[[Path, Mapping[str, str]], None] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Bring the entry ``final`` (its name is its key) from the registry
    cache: True when ``final`` now holds it, False when there is no registry
    cache, it has no such entry, cannot be reached, or the entry is refused.

    The files ``names`` are pulled into a temporary folder beside ``final``,
    each checked against its digest while it streams; ``check`` then judges
    the folder (it gets each file's sha256 by name and raises
    CacheEntryError to refuse); only then is the folder renamed into place.
    The caller holds the entry's lock.
    """
    from validate.oci_manifest import MANIFEST_MEDIA_TYPE
    from validate.registry import BlobDigestError, RegistryError

    remote = registry_cache(env)
    if remote is None:
        return False
    key = final.name
    tag = entry_tag(kind, key)
    try:
        client = remote.client(env)
        data = client.get_manifest(tag, MANIFEST_MEDIA_TYPE)
        if data is None:
            log.info("%s %s is not in the registry cache %s", kind, key[:12], remote)
            return False
        layers = _entry_layers(data, kind, key, names)
        with new_entry(final) as tmp:
            for name, layer in layers.items():
                client.pull_blob(layer, tmp / name, name)
            if check is not None:
                check(tmp, {n: d.digest.removeprefix("sha256:") for n, d in layers.items()})
    except (BlobDigestError, CacheEntryError) as exc:
        log.error(
            "REFUSED %s %s from the registry cache %s: %s; making it here instead",
            kind,
            key[:12],
            remote,
            exc.message,
        )
        return False
    except RegistryError as exc:
        log.warning(
            "registry cache %s unavailable (%s); making %s %s here",
            remote,
            exc.message,
            kind,
            key[:12],
        )
        return False
    log.info("%s %s fetched from the registry cache %s", kind, key[:12], remote)
    return True


def _entry_layers(data: bytes, kind: str, key: str, names: Sequence[str]) -> dict[str, Descriptor]:
    """The layers of an entry's manifest by file name, once each of ``names``.
    File names are the caller's, never a path from the registry."""
    from validate.oci_manifest import MANIFEST_MEDIA_TYPE, TITLE
    from validate.registry import descriptors, json_object

    doc = json_object(data, "cache entry's manifest")
    annotations = doc.get("annotations")
    if (
        doc.get("mediaType") != MANIFEST_MEDIA_TYPE
        or doc.get("artifactType") != CACHE_ARTIFACT_TYPE
        or not isinstance(annotations, dict)
        or annotations.get(KEY_ANNOTATION) != key
        or annotations.get(KIND_ANNOTATION) != kind
    ):
        raise CacheEntryError(f"its manifest is not a {CACHE_ARTIFACT_TYPE} for {kind} {key}")
    layers: dict[str, Descriptor] = {}
    for layer in descriptors(doc.get("layers"), "layers"):
        name = layer.annotations.get(TITLE, "")
        if name not in names or name in layers or layer.media_type != CACHE_FILE_MEDIA_TYPE:
            raise CacheEntryError(f"its layer {escape(repr(name), 100)} is not one of {names}")
        if layer.size > MAX_CACHED_FILE:
            raise CacheEntryError(f"its {name} would be {layer.size} bytes")
        layers[name] = layer
    if len(layers) != len(names):
        raise CacheEntryError(f"it lacks {sorted(set(names) - set(layers))}")
    return {name: layers[name] for name in names}


def share_entry(
    final: Path, kind: str, names: Sequence[str], *, env: Mapping[str, str] | None = None
) -> None:
    """Push the local entry ``final`` to the registry cache, if there is one,
    tagged by its kind and key. A failure is a warning: the entry is here."""
    from validate.oci_manifest import (
        EMPTY_CONFIG,
        MANIFEST_MEDIA_TYPE,
        TITLE,
        Descriptor,
        image_manifest,
        sha256_digest,
    )

    remote = registry_cache(env)
    if remote is None:
        return
    key = final.name
    tag = entry_tag(kind, key)
    try:
        client = remote.client(env)
        client.push_blob(EMPTY_CONFIG, sha256_digest(EMPTY_CONFIG), len(EMPTY_CONFIG), "config")
        layers = []
        for name in names:
            path = final / name
            digest, size = "sha256:" + hash_file(path)["sha256"], path.stat().st_size
            client.push_blob(path, digest, size, name)
            layers.append(Descriptor(CACHE_FILE_MEDIA_TYPE, digest, size, {TITLE: name}))
        annotations = {KEY_ANNOTATION: key, KIND_ANNOTATION: kind}
        manifest = image_manifest(CACHE_ARTIFACT_TYPE, layers, annotations=annotations)
        client.put_manifest(tag, manifest, MANIFEST_MEDIA_TYPE)
    except InputError:
        raise
    except (GoldsmithError, OSError) as exc:
        why = exc.message if isinstance(exc, GoldsmithError) else str(exc)
        log.warning("%s %s not shared through %s: %s", kind, key[:12], remote, why)
        return
    log.info("%s %s pushed to the registry cache %s as %s", kind, key[:12], remote, tag)


def digest_json(data: Any) -> str:
    """sha256 hex of a canonical JSON encoding (sorted keys, no whitespace)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def hash_file(path: Path, *algorithms: str, chunk_size: int = HASH_CHUNK) -> dict[str, str]:
    """Stream a file once through each named hash (sha256 by default); returns name -> hex.

    hashlib releases the GIL on large buffers, so every digest after the first
    runs in a worker thread while this thread feeds the first one and reads the
    next chunk into a second buffer: with cores to spare, the cost is that of
    the slowest digest rather than the sum of all of them.
    """
    hashers = {name: hashlib.new(name) for name in (algorithms or ("sha256",))}
    first, *others = hashers.values()
    buffers = [bytearray(chunk_size), bytearray(chunk_size)]
    views = [memoryview(b) for b in buffers]
    with (
        open(path, "rb", buffering=0) as f,
        concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(others))) as pool,
    ):
        current = 0
        n = f.readinto(buffers[current])
        while n:
            view = views[current][:n]
            pending: list[concurrent.futures.Future[Any]] = [
                pool.submit(h.update, view) for h in others
            ]
            first.update(view)
            # The other buffer is free: its chunk was hashed before the last wait.
            current ^= 1
            n = f.readinto(buffers[current])
            for future in pending:
                future.result()
    return {name: h.hexdigest() for name, h in hashers.items()}


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def new_entry(final: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes ``final`` atomically.

    On failure the temporary folder is removed and ``final`` is untouched.
    The caller holds the entry's lock.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        if final.exists():  # made meanwhile by a process that ignored the lock
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
