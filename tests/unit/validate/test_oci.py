"""push and pull against a real registry: Debian's docker-registry (distribution
2.8) started here on 127.0.0.1, once over plain HTTP, once with TLS (a
throwaway CA made here) and htpasswd basic auth, and once with its bearer
token auth (a token service started here). That registry has no referrers
API, so the referrers tag schema is what carries the attestation.

With CI set, a missing docker-registry is a failure, never a skip.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import http.server
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from test_manifest import NOW, make_artifact, make_key, sha
from test_outputs import add_outputs

from builder.cli import cli
from builder.errors import InputError
from builder.formats import OutputFormat
from validate.claims import VerificationError
from validate.manifest import sign_artifact
from validate.oci import (
    ATTESTATION_ARTIFACT_TYPE,
    TEMPLATE_ARTIFACT_TYPE,
    pull_template,
    push_template,
)
from validate.oci_manifest import INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, Descriptor, fallback_tag
from validate.oci_reference import Reference, parse_reference
from validate.registry import RegistryClient, RegistryError
from validate.registry_auth import credentials

REGISTRY = shutil.which("docker-registry")
USER, PASSWORD = "builder", "s3cret-for-tests"
CREDS = {"GOLDSMITH_REGISTRY_USERNAME": USER, "GOLDSMITH_REGISTRY_PASSWORD": PASSWORD}


@dataclasses.dataclass(frozen=True)
class Registry:
    host: str
    storage: Path
    ca: Path | None = None

    def ref(self, path: str = "goldsmith/debian", tag: str = "1.0.0") -> Reference:
        return parse_reference(f"{self.host}/{path}:{tag}")

    def blob(self, digest: str) -> Path:
        hexa = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "goldsmith test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


TOKEN_SERVICE, TOKEN_ISSUER = "goldsmith-registry", "goldsmith-test-issuer"


@dataclasses.dataclass(frozen=True)
class TokenServer:
    """A bearer token service as distribution's token auth expects: basic
    auth in, a JWT (ES256, its certificate in x5c) granting what was asked."""

    realm: str
    cert: Path
    scopes: list[str]  # each scope asked for, in order


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@contextlib.contextmanager
def start_token_server(folder: Path) -> Iterator[TokenServer]:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TOKEN_ISSUER)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path = folder / "token-issuer.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    scopes: list[str] = []
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            if self.headers.get("Authorization") != basic:
                self.send_response(401)
                self.end_headers()
                return
            access = []
            for scope in query.get("scope", []):
                scopes.append(scope)
                kind, repository, actions = scope.split(":")
                access.append({"type": kind, "name": repository, "actions": actions.split(",")})
            issued = int(time.time())
            header = {"typ": "JWT", "alg": "ES256", "x5c": [x5c]}
            claims = {
                "iss": TOKEN_ISSUER,
                "sub": USER,
                "aud": TOKEN_SERVICE,
                "exp": issued + 300,
                "nbf": issued - 60,
                "iat": issued,
                "jti": os.urandom(8).hex(),
                "access": access,
            }
            signing_input = ".".join(
                _b64url(json.dumps(part).encode()) for part in (header, claims)
            )
            r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
            body = json.dumps({"token": f"{signing_input}.{_b64url(signature)}"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TokenServer(f"http://127.0.0.1:{server.server_port}/token", cert_path, scopes)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def start_registry(
    folder: Path, *, secure: bool, token: TokenServer | None = None
) -> Iterator[Registry]:
    if REGISTRY is None:
        if os.environ.get("CI"):
            pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
        pytest.skip("docker-registry is not installed")
    port = free_port()
    storage = folder / "storage"
    http = [f"  addr: 127.0.0.1:{port}", "  secret: goldsmith-tests"]
    extra: list[str] = []
    ca = None
    if secure:
        ca, cert, key = make_tls(folder)
        http += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        (folder / "htpasswd").write_text(f"{USER}:{hashed}\n")
        extra = ["auth:", "  htpasswd:", "    realm: goldsmith", f"    path: {folder / 'htpasswd'}"]
    if token is not None:
        extra = [
            "auth:",
            "  token:",
            f"    realm: {token.realm}",
            f"    service: {TOKEN_SERVICE}",
            f"    issuer: {TOKEN_ISSUER}",
            f"    rootcertbundle: {token.cert}",
        ]
    config = folder / "config.yml"
    config.write_text(
        "\n".join(
            [
                "version: 0.1",
                "log: {level: error}",
                "storage:",
                f"  filesystem: {{rootdirectory: {storage}}}",
                "  delete: {enabled: true}",
                "http:",
                *http,
                *extra,
            ]
        )
        + "\n"
    )
    log = open(folder / "registry.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [REGISTRY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"{'https' if secure else 'http'}://127.0.0.1:{port}/v2/"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(url, verify=str(ca) if ca else True, timeout=2).status_code in (
                    200,
                    401,
                ):
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "docker-registry did not start: " + (folder / "registry.log").read_text()
                )
            time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", storage, ca)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("plain-registry"), secure=False) as registry:
        yield registry


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("tls-registry"), secure=True) as registry:
        yield registry


@pytest.fixture(scope="module")
def bearer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, TokenServer]]:
    folder = tmp_path_factory.mktemp("token-registry")
    with (
        start_token_server(folder) as token,
        start_registry(folder, secure=False, token=token) as registry,
    ):
        yield registry, token


@dataclasses.dataclass(frozen=True)
class Signed:
    artifact: Path
    key: Path
    pub: Path


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    root = tmp_path_factory.mktemp("signed")
    artifact = make_artifact(root)
    add_outputs(artifact, [OutputFormat.raw, OutputFormat.vhd, OutputFormat.ova])
    key = make_key(root)
    sign_artifact(artifact, key, now=NOW)
    return Signed(artifact, key, key.with_name(key.name + ".pub"))


PLAIN_ENV: dict[str, str] = {"DOCKER_CONFIG": "/nonexistent"}


def pushed_files(artifact: Path) -> list[str]:
    return sorted(
        p.name
        for p in artifact.iterdir()
        if p.name
        in {
            "disk.qcow2",
            "disk.raw",
            "disk.vhd",
            "disk.ova",
            "build.json",
            "validation.json",
            "manifest.dsse.json",
            "sbom.cdx.json",
            "sbom.dsse.json",
            "provenance.dsse.json",
        }
    )


def assert_nothing_left(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir())
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.pull-")]


# --- references and credentials ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:5000/a/b:1.0", Reference("localhost:5000", "a/b", "1.0")),
        (
            "registry.example.com/team/debian-12",
            Reference("registry.example.com", "team/debian-12"),
        ),
        (
            "127.0.0.1:5000/x@sha256:" + "ab" * 32,
            Reference("127.0.0.1:5000", "x", None, "sha256:" + "ab" * 32),
        ),
        ("[::1]:5000/x/y__z:t", Reference("[::1]:5000", "x/y__z", "t")),
    ],
)
def test_references_are_parsed(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected
    assert str(parse_reference(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "debian:12",  # no registry host: none is guessed
        "library/debian:12",
        "localhost:5000",
        "localhost:5000/A/b",
        "localhost:5000/a b:1",
        "localhost:5000/a:1\n",
        "localhost:5000/a:1\x1b[2J",
        "localhost:5000/a:t\u202eag",
        "localhost:99999/a:1",
        "localhost:5000/a:-x",
        "localhost:5000/a@sha256:abc",
        "localhost:5000/a:1@sha256:" + "ab" * 32,
        "localhost:5000/a//b",
        "localhost:5000/../a",
        "-x.example.com/a",
        "localhost:5000/" + "a" * 300,
    ],
)
def test_bad_references_are_one_line_and_exit_2(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_reference(text)
    assert caught.value.exit_code == 2
    assert "host[:port]/path" in caught.value.message
    assert "\n" not in caught.value.message and "\x1b" not in caught.value.message


def test_credentials_from_the_environment_or_the_docker_config(tmp_path: Path) -> None:
    env = {"GOLDSMITH_REGISTRY_USERNAME": "u", "GOLDSMITH_REGISTRY_PASSWORD": "p:w"}
    assert credentials("h:5000", env) == ("u", "p:w")
    with pytest.raises(InputError, match="expected both"):
        credentials("h:5000", {"GOLDSMITH_REGISTRY_USERNAME": "u"})
    auth = base64.b64encode(b"alice:pa:ss").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"h:5000": {"auth": auth}}}))
    assert credentials("h:5000", {"DOCKER_CONFIG": str(tmp_path)}) == ("alice", "pa:ss")
    assert credentials("other:5000", {"DOCKER_CONFIG": str(tmp_path)}) is None
    (tmp_path / "config.json").write_text('{"auths": {"h:5000": {"auth": "!!"}}}')
    with pytest.raises(InputError, match="base64"):
        credentials("h:5000", {"DOCKER_CONFIG": str(tmp_path)})
    (tmp_path / "config.json").write_text('{"auths": {}, "auths": {}}')
    with pytest.raises(InputError, match="docker config"):
        credentials("h:5000", {"DOCKER_CONFIG": str(tmp_path)})


# --- plain HTTP ------------------------------------------------------------------------------


def test_push_then_pull_verifies_and_is_byte_identical(
    plain: Registry, signed: Signed, tmp_path: Path
) -> None:
    ref = plain.ref("goldsmith/roundtrip")
    pushed = push_template(signed.artifact, ref, plain_http=True, env=PLAIN_ENV)
    assert not pushed.referrers_api  # distribution 2.8: the tag schema carries it
    client = RegistryClient(ref, plain_http=True, env=PLAIN_ENV)
    manifest = client.get_manifest("1.0.0", MANIFEST_MEDIA_TYPE)
    assert manifest is not None
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == pushed.manifest_digest
    doc = json.loads(manifest)
    assert doc["artifactType"] == TEMPLATE_ARTIFACT_TYPE
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in doc["layers"]] == [
        "disk.qcow2",
        "disk.raw",
        "disk.vhd",
        "disk.ova",
        "build.json",
        "validation.json",
        "sbom.cdx.json",
    ]
    index = client.get_manifest(fallback_tag(pushed.manifest_digest), INDEX_MEDIA_TYPE)
    assert index is not None
    # Each signed envelope is a referrer of its own, named by its title.
    entries = json.loads(index)["manifests"]
    assert {e["artifactType"] for e in entries} == {ATTESTATION_ARTIFACT_TYPE}
    titles = {e["annotations"]["org.opencontainers.image.title"]: e for e in entries}
    assert sorted(titles) == ["manifest.dsse.json", "provenance.dsse.json", "sbom.dsse.json"]
    assert titles["manifest.dsse.json"]["digest"] == pushed.attestation_digest
    assert titles["manifest.dsse.json"]["annotations"]["in-toto.io/predicate-type"] == (
        "https://goldsmith.dev/template/v1"
    )

    out = tmp_path / "pulled"
    out.mkdir()  # an empty folder is fine
    pulled = pull_template(ref, out, keys=[signed.pub], plain_http=True, env=PLAIN_ENV)
    assert pulled.manifest_digest == pushed.manifest_digest
    assert pulled.verdict.formats == ("qcow2", "raw", "vhd", "ova")
    assert pushed_files(out) == pushed_files(signed.artifact)
    for name in pushed_files(out):
        assert (out / name).read_bytes() == (signed.artifact / name).read_bytes(), name
    # By digest too, and a second push of the same template changes nothing.
    again = push_template(signed.artifact, ref, plain_http=True, env=PLAIN_ENV)
    assert again.manifest_digest == pushed.manifest_digest
    by_digest = parse_reference(f"{plain.host}/goldsmith/roundtrip@{pushed.manifest_digest}")
    pull_template(by_digest, tmp_path / "again", keys=[signed.pub], plain_http=True, env=PLAIN_ENV)
    index = client.get_manifest(fallback_tag(pushed.manifest_digest), INDEX_MEDIA_TYPE)
    assert index is not None and len(json.loads(index)["manifests"]) == 3


def copy_registry_repo(plain: Registry, signed: Signed, repo: str) -> Reference:
    ref = plain.ref(repo)
    push_template(signed.artifact, ref, plain_http=True, env=PLAIN_ENV)
    return ref


def test_a_blob_altered_in_the_registry_is_refused_and_nothing_appears(
    plain: Registry, signed: Signed, tmp_path: Path
) -> None:
    # Its own copy of the disk (another size), so other tests keep an intact blob.
    root = tmp_path / "art"
    root.mkdir()
    artifact = make_artifact(root, size="2M")
    sign_artifact(artifact, signed.key, now=NOW)
    ref = plain.ref("goldsmith/tampered-blob")
    push_template(artifact, ref, plain_http=True, env=PLAIN_ENV)
    blob = plain.blob("sha256:" + sha(artifact / "disk.qcow2")[0])
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    out = tmp_path / "out"
    runner = CliRunner()
    done = runner.invoke(
        cli,
        ["pull", str(ref), "--key", str(signed.pub), "--out", str(out), "--plain-http"],
        env=PLAIN_ENV,
    )
    assert done.exit_code == 1, done.output
    assert "disk.qcow2: the blob the registry sent is not sha256:" in done.output
    assert_nothing_left(out)


def test_a_replaced_referrer_is_refused_and_nothing_appears(
    plain: Registry, signed: Signed, tmp_path: Path
) -> None:
    ref = copy_registry_repo(plain, signed, "goldsmith/replaced")
    # The same template signed by a key the deployer does not trust...
    other = tmp_path / "other"
    shutil.copytree(signed.artifact, other)
    (other / "manifest.dsse.json").unlink()  # sign would add to it
    sign_artifact(other, make_key(tmp_path, name="intruder"), now=NOW)
    pushed = push_template(other, ref, plain_http=True, env=PLAIN_ENV)
    # ...made the only referrer (the tag schema's index rewritten).
    client = RegistryClient(ref, plain_http=True, env=PLAIN_ENV)
    tag = fallback_tag(pushed.manifest_digest)
    index = json.loads(client.get_manifest(tag, INDEX_MEDIA_TYPE) or b"{}")
    statements = [
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.title"] == "manifest.dsse.json"
    ]
    assert len(statements) == 2  # both signed statements were attached
    index["manifests"] = [m for m in index["manifests"] if m["digest"] == pushed.attestation_digest]
    client.put_manifest(tag, json.dumps(index).encode(), INDEX_MEDIA_TYPE)

    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="not signed by any trusted key"):
        pull_template(ref, out, keys=[signed.pub], plain_http=True, env=PLAIN_ENV)
    assert_nothing_left(out)
    done = CliRunner().invoke(
        cli,
        ["pull", str(ref), "--key", str(signed.pub), "--out", str(out), "--plain-http"],
        env=PLAIN_ENV,
    )
    assert done.exit_code == 1
    assert done.stdout.startswith("NOT TRUSTED: no attached signed manifest verifies")
    assert_nothing_left(out)
    # The intruder's key does verify it: the refusal was about trust, not transport.
    pull_template(
        ref,
        tmp_path / "intruder-view",
        keys=[tmp_path / "intruder.pem.pub"],
        plain_http=True,
        env=PLAIN_ENV,
    )


def test_an_altered_envelope_and_a_missing_referrer_are_refused(
    plain: Registry, signed: Signed, tmp_path: Path
) -> None:
    ref = copy_registry_repo(plain, signed, "goldsmith/no-referrer")
    client = RegistryClient(ref, plain_http=True, env=PLAIN_ENV)
    manifest = client.get_manifest("1.0.0", MANIFEST_MEDIA_TYPE) or b""
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    empty = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
    client.put_manifest(fallback_tag(digest), json.dumps(empty).encode(), INDEX_MEDIA_TYPE)
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="no signed manifest is attached"):
        pull_template(ref, out, keys=[signed.pub], plain_http=True, env=PLAIN_ENV)
    assert_nothing_left(out)

    ref = copy_registry_repo(plain, signed, "goldsmith/altered-envelope")
    envelope = (signed.artifact / "manifest.dsse.json").read_bytes()
    blob = plain.blob("sha256:" + hashlib.sha256(envelope).hexdigest())
    blob.write_bytes(envelope.replace(b'"payload"', b'"payload" '))
    with pytest.raises(VerificationError, match="the registry sent other bytes"):
        pull_template(ref, out, keys=[signed.pub], plain_http=True, env=PLAIN_ENV)
    assert_nothing_left(out)
    blob.write_bytes(envelope)


def test_pull_refuses_a_full_out_folder_and_a_missing_tag(
    plain: Registry, signed: Signed, tmp_path: Path
) -> None:
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep").write_text("mine")
    runner = CliRunner()
    args = ["--key", str(signed.pub), "--plain-http"]
    done = runner.invoke(cli, ["pull", str(plain.ref()), *args, "--out", str(out)], env=PLAIN_ENV)
    assert (
        done.exit_code == 2 and "expected a folder that does not exist or is empty" in done.output
    )
    assert (out / "keep").read_text() == "mine"
    ref = plain.ref("goldsmith/absent")
    with pytest.raises(RegistryError, match="no such manifest"):
        pull_template(ref, tmp_path / "x", keys=[signed.pub], plain_http=True, env=PLAIN_ENV)
    assert_nothing_left(tmp_path / "x")
    done = runner.invoke(cli, ["pull", "debian:12", *args, "--out", str(tmp_path / "y")])
    assert done.exit_code == 2
    assert done.output.count("\n") <= 2 and "Traceback" not in done.output


# --- TLS and basic auth ------------------------------------------------------------------


def test_tls_with_a_custom_ca_and_basic_auth(
    secure: Registry, signed: Signed, tmp_path: Path
) -> None:
    assert secure.ca is not None
    ref = secure.ref("goldsmith/secure")
    env = {
        "GOLDSMITH_REGISTRY_USERNAME": USER,
        "GOLDSMITH_REGISTRY_PASSWORD": PASSWORD,
        "DOCKER_CONFIG": "/nonexistent",
    }
    runner = CliRunner()
    done = runner.invoke(
        cli, ["push", str(signed.artifact), str(ref), "--ca-file", str(secure.ca)], env=env
    )
    assert done.exit_code == 0, done.output
    assert f"{secure.host}/goldsmith/secure@sha256:" in done.output

    # Pull with the docker config's credentials and SSL_CERT_FILE.
    (tmp_path / "docker").mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "docker" / "config.json").write_text(
        json.dumps({"auths": {secure.host: {"auth": auth}}})
    )
    env = {"DOCKER_CONFIG": str(tmp_path / "docker"), "SSL_CERT_FILE": str(secure.ca)}
    out = tmp_path / "out"
    done = runner.invoke(
        cli, ["pull", str(ref), "--key", str(signed.pub), "--out", str(out), "--json"], env=env
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["trusted"] is True
    assert (out / "disk.qcow2").read_bytes() == (signed.artifact / "disk.qcow2").read_bytes()


def test_tls_and_auth_failures_are_one_line(
    secure: Registry, signed: Signed, tmp_path: Path
) -> None:
    assert secure.ca is not None
    ref = secure.ref("goldsmith/secure-failures")
    no_creds = {"DOCKER_CONFIG": "/nonexistent"}
    with pytest.raises(RegistryError, match="TLS verification failed"):
        push_template(signed.artifact, ref, env=no_creds)
    with pytest.raises(RegistryError, match="asks for a user name and password"):
        push_template(signed.artifact, ref, ca_file=secure.ca, env=no_creds)
    wrong = {
        "GOLDSMITH_REGISTRY_USERNAME": USER,
        "GOLDSMITH_REGISTRY_PASSWORD": "wrong",
        "DOCKER_CONFIG": "/nonexistent",
    }
    with pytest.raises(RegistryError, match="HTTP 401"):
        push_template(signed.artifact, ref, ca_file=secure.ca, env=wrong)
    out = tmp_path / "out"
    done = CliRunner().invoke(
        cli,
        [
            "pull",
            str(ref),
            "--key",
            str(signed.pub),
            "--out",
            str(out),
            "--ca-file",
            str(secure.ca),
        ],
        env=wrong,
    )
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert_nothing_left(out)


# --- bearer tokens -----------------------------------------------------------------------


def test_bearer_tokens_for_pull_then_push_scopes(
    bearer: tuple[Registry, TokenServer], signed: Signed, tmp_path: Path
) -> None:
    """distribution's token auth: a token for pulling is refused a push, so
    the client asks again with the scope the registry names."""
    registry, token = bearer
    env = {**CREDS, "DOCKER_CONFIG": "/nonexistent"}
    ref = registry.ref("goldsmith/bearer")
    pushed = push_template(signed.artifact, ref, plain_http=True, env=env)
    asked = [
        (scope.rpartition(":")[0], set(scope.rpartition(":")[2].split(",")))
        for scope in token.scopes
    ]
    assert ("repository:goldsmith/bearer", {"pull"}) in asked
    assert ("repository:goldsmith/bearer", {"pull", "push"}) in asked  # in either order
    out = tmp_path / "out"
    pulled = pull_template(ref, out, keys=[signed.pub], plain_http=True, env=env)
    assert pulled.manifest_digest == pushed.manifest_digest
    for name in pushed_files(out):
        assert (out / name).read_bytes() == (signed.artifact / name).read_bytes(), name
    # Without credentials the token service says no: one line, no traceback.
    with pytest.raises(RegistryError):
        pull_template(ref, tmp_path / "x", keys=[signed.pub], plain_http=True, env=PLAIN_ENV)
    assert_nothing_left(tmp_path / "x")


def test_an_upload_refused_mid_token_is_sent_again_whole(
    bearer: tuple[Registry, TokenServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token that expires before the upload: the registry answers the PUT
    with 401 and the upload goes again from its first byte, as often as the
    client asks for a new token."""
    registry, _ = bearer
    env = {**CREDS, "DOCKER_CONFIG": "/nonexistent"}
    client = RegistryClient(registry.ref("goldsmith/expired"), plain_http=True, env=env)
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(5 << 20))
    digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    request = client.request
    uploads: list[str] = []

    def expire_before_upload(method: str, url: str, **kwargs: Any) -> requests.Response:
        if method == "PUT":
            client.oras.auth.token = "expired"
            uploads.append(url)
        return request(method, url, **kwargs)

    monkeypatch.setattr(client, "request", expire_before_upload)
    client.push_blob(blob, digest, blob.stat().st_size, "blob")
    assert uploads and client.has_blob(digest)
    pulled = tmp_path / "pulled"
    client.pull_blob(Descriptor("application/octet-stream", digest, 5 << 20), pulled, "blob")
    assert pulled.read_bytes() == blob.read_bytes()
