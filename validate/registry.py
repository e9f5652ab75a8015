"""An OCI distribution registry, one repository at a time: a client for blobs,
manifests and referrers. The repository is named by a strict reference
(validate/oci_reference.py); credentials and TLS trust are
validate/registry_auth.py's.

Transport is the ORAS Python SDK's registry client (``oras``): its requests
session, the 401 dance and bearer-token exchange. It has no referrers API, no
tag-schema fallback and no progress, and re-serialises manifests it sends, so
manifests (whose exact bytes are their digest) are sent here as bytes, and
blobs go up and come down in streams counted here.

Throughput (``python -m tests.bench.ship``): a blob goes up as one monolithic
PUT whose body is read from the file in BLOCK-sized writes (urllib3's default
is 16 KiB; 32 MiB PATCH requests each waited for the registry, with the file
read in between), and comes down in BLOCK-sized reads that a worker thread
hashes and writes while the next one is received (hashlib and file writes
release the GIL), so the socket never waits on the hash.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import requests
import requests.adapters

from builder.errors import GoldsmithError
from builder.log import log
from hardening.strictdata import DataError, escape, loads_json
from validate.oci_manifest import INDEX_MEDIA_TYPE, Descriptor, fallback_tag, sha256_digest
from validate.oci_reference import DIGEST, Reference
from validate.registry_auth import PASSWORD_ENV, USERNAME_ENV, ca_bundle, credentials

# Bytes per file read, socket write and streamed read: large enough that the
# per-call cost of Python, urllib3 and the progress count is negligible,
# small enough to stay in the CPU's cache while it is hashed.
BLOCK = 1024 * 1024
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # what distribution itself accepts
TIMEOUT = (15, 300)  # connect, read (seconds)


class RegistryError(GoldsmithError):
    """The registry failed or served something that is not what was asked for (exit 1)."""


class BlobDigestError(RegistryError):
    """A blob the registry sent is not the one its descriptor names."""


# --- the client -------------------------------------------------------------------------


class _BlockAdapter(requests.adapters.HTTPAdapter):
    """urllib3 connections that send a file body in BLOCK-sized writes."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **{**kwargs, "blocksize": BLOCK})

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        return super().proxy_manager_for(proxy, **{**proxy_kwargs, "blocksize": BLOCK})


class _TimedSession(requests.Session):
    """A requests session that never waits forever (oras passes no timeout)
    and sends an upload from its first byte on every attempt."""

    def __init__(self) -> None:
        super().__init__()
        adapter = _BlockAdapter()
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return super().request(*args, **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # oras sends a request again after a 401 (a bearer token to fetch),
        # and requests follows a 307 with the same body object: either way
        # the body has been read, and its Content-Length promises every byte.
        if isinstance(request.body, _Upload):
            request.body.rewind()
        return super().send(request, **kwargs)


class _Upload:
    """A file as a request body of exactly ``size`` bytes, counted for progress.

    requests takes it for a file (it has ``read``) and sends Content-Length
    from ``len()``; urllib3 reads it in BLOCK-sized pieces. A file that has
    shrunk since it was hashed ends the upload with an error (the registry
    would otherwise wait for the bytes promised); one that has grown sends
    only ``size`` bytes, and the registry refuses their digest.
    """

    def __init__(self, f: IO[bytes], size: int, progress: Progress) -> None:
        self.f, self.size, self.progress = f, size, progress
        self.sent = 0

    def __len__(self) -> int:
        return self.size

    def rewind(self) -> None:
        self.f.seek(0)
        self.sent = self.progress.done = 0

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.sent
        data = self.f.read(left if n < 0 else min(n, left))
        if left and not data:
            raise RegistryError(
                f"{self.progress.name}: the file ended after {self.sent} of {self.size} bytes; "
                "it changed while being pushed"
            )
        self.sent += len(data)
        self.progress.add(len(data))
        return data


class Progress:
    """Bytes moved, on stderr at most once a second, and the rate at the end."""

    def __init__(self, verb: str, name: str, total: int) -> None:
        self.verb, self.name, self.total = verb, name, total
        self.done = 0
        self.start = self.last = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            log.info(
                "  %s %s: %d/%d MiB (%.1f MiB/s)",
                self.verb,
                self.name,
                self.done >> 20,
                self.total >> 20,
                self.rate(),
            )

    def rate(self) -> float:
        return self.done / (1 << 20) / max(time.monotonic() - self.start, 1e-6)

    def finish(self) -> None:
        log.info("  %s %s: %d MiB (%.1f MiB/s)", self.verb, self.name, self.done >> 20, self.rate())


class RegistryClient:
    """One repository of one registry, over oras's registry client."""

    def __init__(
        self,
        ref: Reference,
        *,
        plain_http: bool = False,
        ca_file: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        import oras.provider  # imported here: only push and pull need requests and oras

        self.ref = ref
        self.base = f"{'http' if plain_http else 'https'}://{ref.host}/v2/{ref.path}"
        verify = ca_bundle(ca_file, env)
        self.creds = credentials(ref.host, env)
        scheme = self._challenge(verify, plain_http)
        self.bearer = scheme == "bearer"
        self.oras = oras.provider.Registry(
            hostname=ref.host,
            insecure=plain_http,
            tls_verify=verify,
            auth_backend="basic" if scheme == "basic" else "token",
        )
        session = _TimedSession()
        self.oras.session = self.oras.auth.session = session
        # A Basic registry gets the header on every request: otherwise each
        # chunk would be sent twice, once to meet the 401.
        self.headers: dict[str, str] = {}
        if self.creds is not None:
            self.oras.auth.set_basic_auth(*self.creds)
            if scheme == "basic":
                self.headers = dict(self.oras.auth.get_auth_header())
        elif scheme == "basic":
            raise RegistryError(
                f"{ref.host} asks for a user name and password",
                hint=f"set {USERNAME_ENV} and {PASSWORD_ENV}, or log in with docker login",
            )

    def _challenge(self, verify: str | bool, plain_http: bool) -> str | None:
        """The registry's auth scheme (basic, bearer or none), from GET /v2/."""
        url = f"{'http' if plain_http else 'https'}://{self.ref.host}/v2/"
        try:
            response = requests.get(url, verify=verify, timeout=TIMEOUT)
        except requests.exceptions.SSLError as exc:
            raise RegistryError(
                f"{self.ref.host}: TLS verification failed ({_short(exc)})",
                hint="give the registry's CA with --ca-file (or SSL_CERT_FILE)",
            ) from None
        except requests.RequestException as exc:
            raise RegistryError(f"{self.ref.host}: unreachable ({_short(exc)})") from None
        if response.status_code == 401:
            header = response.headers.get("WWW-Authenticate", "")
            return header.split(" ", 1)[0].lower() or None
        if response.status_code != 200:
            raise RegistryError(f"{url}: HTTP {response.status_code}; not an OCI registry")
        return None

    def request(
        self, method: str, url: str, *, data: bytes | _Upload | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        # oras retries every failure five times with growing sleeps (minutes in
        # all); a deploy pipeline wants the error now. The undecorated method
        # keeps oras's auth handling.
        method_of = type(self.oras).do_request
        call: Callable[..., requests.Response] = getattr(method_of, "__wrapped__", method_of)
        try:
            response = call(self.oras, url, method, data=data, headers=dict(headers), **kwargs)
            if response.status_code == 401 and self.bearer and self.oras.auth.token is not None:
                # oras keeps one token and offers it again when it is refused;
                # but a token for pulling is refused a push (the challenge
                # names the wider scope), and tokens expire: ask anew, once.
                response.close()
                self.oras.auth.token = None
                response = call(self.oras, url, method, data=data, headers=dict(headers), **kwargs)
            return response
        except requests.RequestException as exc:
            raise RegistryError(f"{method} {url}: {_short(exc)}") from None
        except ValueError as exc:  # oras: "Cannot respond to request for authentication."
            raise RegistryError(f"{method} {url}: {exc}") from None

    def _expect(self, response: requests.Response, *codes: int) -> requests.Response:
        if response.status_code not in codes:
            raise RegistryError(
                f"{response.request.method} {response.url}: HTTP {response.status_code} "
                f"{escape(response.text[:300])}"
            )
        return response

    # -- blobs --

    def has_blob(self, digest: str) -> bool:
        return self.request("HEAD", f"{self.base}/blobs/{digest}").status_code == 200

    def push_blob(self, source: Path | bytes, digest: str, size: int, name: str) -> None:
        """Upload a blob unless the registry has it: one monolithic PUT
        (POST, then PUT with the digest and the whole body), the registry
        checking the digest of what it received before it keeps it."""
        if self.has_blob(digest):
            log.info("  %s: already in the registry", name)
            return
        response = self._expect(
            self.request("POST", f"{self.base}/blobs/uploads/", headers={"Content-Length": "0"}),
            202,
        )
        location = self._location(response)
        separator = "&" if "?" in location else "?"
        url = f"{location}{separator}digest={digest}"
        headers = {"Content-Type": "application/octet-stream"}
        if isinstance(source, bytes):
            self._expect(self.request("PUT", url, data=source, headers=headers), 201)
            return
        progress = Progress("pushing", name, size)
        try:
            with open(source, "rb") as f:
                # requests reads an empty body as none at all: send b"" instead.
                body: _Upload | bytes = _Upload(f, size, progress) if size else b""
                self._expect(self.request("PUT", url, data=body, headers=headers), 201)
        except OSError as exc:
            raise GoldsmithError(f"{source}: cannot be read ({exc.strerror or exc})") from None
        if size > BLOCK:
            progress.finish()

    def _location(self, response: requests.Response) -> str:
        location = response.headers.get("Location", "")
        if not location:
            raise RegistryError(f"{response.url}: the registry gave no upload location")
        if location.startswith("/"):
            location = self.base.split("/v2/", 1)[0] + location
        return location

    def pull_blob(self, descriptor: Descriptor, target: Path, name: str) -> None:
        """Stream a blob into ``target``, refusing the moment it is longer than
        its descriptor, and at the end unless its sha256 is the descriptor's."""
        response = self.request("GET", f"{self.base}/blobs/{descriptor.digest}", stream=True)
        self._expect(response, 200)
        digest = hashlib.sha256()
        progress = Progress("pulling", name, descriptor.size)

        def consume(f: IO[bytes], block: bytes) -> None:
            digest.update(block)
            f.write(block)

        try:
            with (
                response,
                open(target, "xb") as f,
                concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker,
            ):
                # One block is hashed and written while the next is received;
                # at most two are in memory.
                pending: concurrent.futures.Future[None] | None = None
                for block in response.iter_content(chunk_size=BLOCK):
                    progress.add(len(block))
                    if progress.done > descriptor.size:
                        raise BlobDigestError(
                            f"{name}: the registry sent more than {descriptor.size} bytes"
                        )
                    if pending is not None:
                        pending.result()
                    pending = worker.submit(consume, f, block)
                if pending is not None:
                    pending.result()
        except requests.RequestException as exc:
            raise RegistryError(f"GET {response.url}: {_short(exc)}") from None
        except OSError as exc:
            raise GoldsmithError(f"{target}: cannot be written ({exc.strerror or exc})") from None
        if progress.done != descriptor.size or f"sha256:{digest.hexdigest()}" != descriptor.digest:
            raise BlobDigestError(
                f"{name}: the blob the registry sent is not {descriptor.digest} "
                f"(sha256:{digest.hexdigest()}, {progress.done} bytes); "
                "it was altered in the registry"
            )
        if descriptor.size > BLOCK:
            progress.finish()

    def blob_bytes(self, descriptor: Descriptor, limit: int) -> bytes:
        if descriptor.size > limit:
            raise RegistryError(f"{descriptor.digest}: {descriptor.size} bytes, more than {limit}")
        response = self._expect(self.request("GET", f"{self.base}/blobs/{descriptor.digest}"), 200)
        data = response.content
        if len(data) != descriptor.size or sha256_digest(data) != descriptor.digest:
            raise RegistryError(f"{descriptor.digest}: the registry sent other bytes")
        return data

    # -- manifests --

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> requests.Response:
        return self._expect(
            self.request(
                "PUT",
                f"{self.base}/manifests/{reference}",
                data=data,
                headers={"Content-Type": media_type},
            ),
            201,
        )

    def get_manifest(self, reference: str, accept: str) -> bytes | None:
        """The exact bytes of a manifest, or None when the registry has none by that name."""
        response = self.request(
            "GET", f"{self.base}/manifests/{reference}", headers={"Accept": accept}, stream=True
        )
        if response.status_code == 404:
            return None
        self._expect(response, 200)
        with response:
            data = response.raw.read(MAX_MANIFEST_BYTES + 1, decode_content=True)
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"{reference}: a manifest larger than {MAX_MANIFEST_BYTES} bytes")
        if DIGEST.fullmatch(reference) and sha256_digest(data) != reference:
            raise RegistryError(f"{reference}: the registry sent a manifest with another digest")
        return bytes(data)

    def referrers(self, digest: str) -> list[Descriptor]:
        """The manifests whose subject is ``digest``: from the referrers API,
        else from the referrers tag schema's index."""
        response = self.request(
            "GET",
            f"{self.base}/referrers/{digest}",
            headers={"Accept": INDEX_MEDIA_TYPE},
        )
        data: bytes | None
        if response.status_code == 200 and response.headers.get("Content-Type", "").startswith(
            INDEX_MEDIA_TYPE
        ):
            data = response.content
        else:
            data = self.get_manifest(fallback_tag(digest), INDEX_MEDIA_TYPE)
        if data is None:
            return []
        index = json_object(data, "referrers index")
        return descriptors(index.get("manifests"), "manifests")


def _short(exc: Exception) -> str:
    return escape(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 300)


def json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = loads_json(data)
    except DataError as exc:
        raise RegistryError(f"the {what} is not acceptable JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"the {what} is not a JSON object")
    return doc


def descriptors(value: Any, field: str) -> list[Descriptor]:
    if not isinstance(value, list) or len(value) > 256:
        raise RegistryError(f"{field}: expected a list of descriptors")
    return [descriptor(item, f"{field}[{i}]") for i, item in enumerate(value)]


def descriptor(item: Any, field: str) -> Descriptor:
    if not isinstance(item, dict):
        raise RegistryError(f"{field}: expected a descriptor")
    media_type, digest, size = item.get("mediaType"), item.get("digest"), item.get("size")
    annotations = item.get("annotations", {})
    artifact_type = item.get("artifactType")
    if (
        not isinstance(media_type, str)
        or not isinstance(digest, str)
        or DIGEST.fullmatch(digest) is None
        or isinstance(size, bool)
        or not isinstance(size, int)
        or size < 0
        or not isinstance(annotations, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
        or not (artifact_type is None or isinstance(artifact_type, str))
    ):
        raise RegistryError(f"{field}: expected mediaType, a sha256 digest and a size")
    return Descriptor(media_type, digest, size, annotations, artifact_type)
