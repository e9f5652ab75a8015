"""The base cache in a registry (GOLDSMITH_CACHE=oci://...), against the same
real docker-registry as push and pull (tests/unit/validate/test_oci.py), with
no VM: a small qcow2 made by qemu-img stands in for a bootstrapped base.

With CI set, a missing docker-registry or qemu-img is a failure, never a skip.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from test_oci import PASSWORD, USER, Registry, free_port, start_registry

from builder import base as base_module
from builder.cache import (
    CACHE_ARTIFACT_TYPE,
    CacheEntryError,
    RegistryCache,
    cache_root,
    digest_json,
    entry_tag,
    fetch_entry,
    hash_file,
    locked,
    new_entry,
    registry_cache,
    share_entry,
)
from builder.errors import InputError
from builder.log import log
from builder.spec import DebootstrapBase
from validate.oci_manifest import MANIFEST_MEDIA_TYPE
from validate.oci_reference import parse_reference
from validate.registry import RegistryClient

NAMES = ("base.qcow2", "vmlinuz", "initrd.img", "meta.json")
DEBIAN = DebootstrapBase(
    suite="bookworm",
    mirror="http://deb.debian.org/debian",
    security_mirror="http://deb.debian.org/debian-security",
    packages=(),
)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("cache-registry"), secure=False) as registry:
        yield registry


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("cache-tls-registry"), secure=True) as registry:
        yield registry


@pytest.fixture(autouse=True)
def logs_reach_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI's setup_logging (run by other tests in this process) stops
    # goldsmith's records at its own handler.
    monkeypatch.setattr(log, "propagate", True)


def cache_env(registry: Registry, repository: str, **extra: str) -> dict[str, str]:
    scheme = "oci" if registry.ca else "oci+http"
    return {
        "GOLDSMITH_CACHE": f"{scheme}://{registry.host}/{repository}",
        "DOCKER_CONFIG": "/nonexistent",
        **extra,
    }


def make_base(folder: Path, inputs: Mapping[str, object]) -> None:
    """What a bootstrap leaves in an entry, small: a qcow2 made by qemu-img
    with some bytes written into it, a kernel, an initrd and meta.json."""
    if shutil.which("qemu-img") is None:
        if os.environ.get("CI"):
            pytest.fail("qemu-img is not installed (apt-get install qemu-utils)")
        pytest.skip("qemu-img is not installed")
    raw = folder / "base.raw"
    with open(raw, "wb") as f:
        f.truncate(64 << 20)
        f.seek(1 << 20)
        f.write(os.urandom(3 << 20))
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(folder / NAMES[0])],
        check=True,
    )
    raw.unlink()
    (folder / "vmlinuz").write_bytes(os.urandom(300_000))
    (folder / "initrd.img").write_bytes(os.urandom(200_000))
    digest = hash_file(folder / NAMES[0])["sha256"]
    (folder / "meta.json").write_text(json.dumps({"sha256": digest, "inputs": inputs}, indent=2))


def put_entry(root: Path, inputs: Mapping[str, object], env: Mapping[str, str]) -> Path:
    """An entry made through the public cache API, then shared."""
    final = root / "bases" / digest_json(inputs)
    with locked(final.with_suffix(".lock")), new_entry(final) as tmp:
        make_base(tmp, inputs)
    share_entry(final, "base", NAMES, env=env)
    return final


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def check_meta(inputs: Mapping[str, object]) -> Callable[[Path, Mapping[str, str]], None]:
    """bootstrap_base's check of a fetched base."""
    return base_module._shared_base_check(dict(inputs))


def assert_no_temporary_folders(root: Path) -> None:
    assert not [p.name for p in (root / "bases").iterdir() if p.name.startswith(".")]


# --- GOLDSMITH_CACHE, read strictly ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "oci://registry.example.com/ci/bases",
            RegistryCache("registry.example.com", "ci/bases"),
        ),
        (
            "oci://registry.example.com:5000/bases/",
            RegistryCache("registry.example.com:5000", "bases"),
        ),
        ("oci+http://127.0.0.1:5000/bases", RegistryCache("127.0.0.1:5000", "bases", True)),
        ("oci+http://localhost:5000/bases", RegistryCache("localhost:5000", "bases", True)),
        ("oci+http://[::1]:5000/bases", RegistryCache("[::1]:5000", "bases", True)),
    ],
)
def test_registry_caches_are_read(value: str, expected: RegistryCache) -> None:
    assert registry_cache({"GOLDSMITH_CACHE": value}) == expected
    assert str(expected) == value.rstrip("/")


@pytest.mark.parametrize(
    "value",
    [
        "oci://",
        "oci://bases",
        "oci://registry.example.com",
        "http://127.0.0.1:5000/bases",
        "oci+https://registry.example.com/bases",
        "oci://registry.example.com/Bases",
        "oci://registry.example.com/bases:latest",
        "oci://registry.example.com/bases@sha256:" + "ab" * 32,
        "oci://registry.example.com/a b",
        "oci://registry.example.com/bases\x1b[2J",
        # Plain HTTP leaves the base of every build to anyone on the path.
        "oci+http://registry.example.com/bases",
        "oci+http://10.0.0.5:5000/bases",
    ],
)
def test_bad_cache_urls_are_one_line_and_exit_2(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InputError) as caught:
        registry_cache({"GOLDSMITH_CACHE": value})
    assert caught.value.exit_code == 2
    message = caught.value.message
    assert message.startswith("<input>: GOLDSMITH_CACHE: expected a folder or oci://host")
    assert "\n" not in message and "\x1b" not in message
    # Every build reads it through cache_root(), so a bad value stops a build
    # before anything is made.
    monkeypatch.setenv("GOLDSMITH_CACHE", value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(InputError):
        cache_root()


def test_a_folder_is_a_folder_and_a_registry_keeps_its_working_copy_in_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert registry_cache({"GOLDSMITH_CACHE": str(tmp_path / "gs")}) is None
    assert registry_cache({}) is None
    monkeypatch.setenv("GOLDSMITH_CACHE", "oci://registry.example.com/bases")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "goldsmith"


def test_the_ca_file_must_be_a_file(tmp_path: Path) -> None:
    env = {
        "GOLDSMITH_CACHE": "oci://registry.example.com/bases",
        "GOLDSMITH_CACHE_CA_FILE": str(tmp_path / "absent.pem"),
    }
    with pytest.raises(InputError) as caught:
        registry_cache(env)
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith(
        "<input>: GOLDSMITH_CACHE_CA_FILE: expected a PEM file of CA certificates"
    )
    (tmp_path / "ca.pem").write_text("")
    env["GOLDSMITH_CACHE_CA_FILE"] = str(tmp_path / "ca.pem")
    assert registry_cache(env) == RegistryCache(
        "registry.example.com", "bases", ca_file=tmp_path / "ca.pem"
    )


def test_entry_tags_are_kind_and_key() -> None:
    assert entry_tag("base", "ab" * 32) == "base-" + "ab" * 32
    with pytest.raises(ValueError):
        entry_tag("base", "../x")


# --- through a real registry -------------------------------------------------------------


def test_an_entry_goes_to_the_registry_and_comes_back_byte_identical(
    plain: Registry, tmp_path: Path
) -> None:
    env = cache_env(plain, "ci/bases")
    inputs = {"suite": "bookworm", "test": "roundtrip"}
    final = put_entry(tmp_path, inputs, env)
    made = snapshot(final)
    assert sorted(made) == sorted(NAMES)
    client = RegistryClient(parse_reference(f"{plain.host}/ci/bases"), plain_http=True, env=env)
    manifest = client.get_manifest(entry_tag("base", final.name), MANIFEST_MEDIA_TYPE)
    assert manifest is not None
    doc = json.loads(manifest)
    assert doc["artifactType"] == CACHE_ARTIFACT_TYPE
    assert doc["annotations"] == {
        "dev.goldsmith.cache.key": final.name,
        "dev.goldsmith.cache.kind": "base",
    }
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in doc["layers"]] == [
        *NAMES
    ]

    # Another runner: nothing local, the entry comes from the registry.
    other = tmp_path / "other-runner" / "bases" / final.name
    assert fetch_entry(other, "base", NAMES, check_meta(inputs), env=env)
    assert snapshot(other) == made
    assert_no_temporary_folders(other.parent.parent)
    # No registry cache configured: nothing is fetched.
    assert not fetch_entry(tmp_path / "x" / "bases" / final.name, "base", NAMES, env={})


def test_a_tampered_blob_is_refused_and_nothing_appears(
    plain: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = cache_env(plain, "ci/tampered")
    inputs = {"suite": "bookworm", "test": "tampered"}
    final = put_entry(tmp_path, inputs, env)
    blob = plain.blob("sha256:" + hash_file(final / "base.qcow2")["sha256"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    other = tmp_path / "other-runner" / "bases" / final.name
    with caplog.at_level(logging.INFO, logger="goldsmith"):
        assert not fetch_entry(other, "base", NAMES, check_meta(inputs), env=env)
    assert not other.exists()
    assert_no_temporary_folders(other.parent.parent)
    (refusal,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert refusal.getMessage().startswith(f"REFUSED base {final.name[:12]} from the registry")
    assert "base.qcow2: the blob the registry sent is not sha256:" in refusal.getMessage()


def test_an_entry_that_is_not_its_keys_is_refused(
    plain: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = cache_env(plain, "ci/lies")
    inputs = {"suite": "bookworm", "test": "lies"}
    final = put_entry(tmp_path, inputs, env)
    client = RegistryClient(parse_reference(f"{plain.host}/ci/lies"), plain_http=True, env=env)
    manifest = client.get_manifest(entry_tag("base", final.name), MANIFEST_MEDIA_TYPE) or b""
    other_inputs = {"suite": "trixie", "test": "lies"}
    other_key = digest_json(other_inputs)
    runner = tmp_path / "other-runner" / "bases"
    with caplog.at_level(logging.ERROR, logger="goldsmith"):
        # The same manifest under another key's tag: its annotation names its own key.
        client.put_manifest(entry_tag("base", other_key), manifest, MANIFEST_MEDIA_TYPE)
        assert not fetch_entry(runner / other_key, "base", NAMES, check_meta(other_inputs), env=env)
        # Its files, under a manifest annotated with the other key: meta.json
        # names the inputs it was made from.
        forged = manifest.replace(final.name.encode(), other_key.encode())
        client.put_manifest(entry_tag("base", other_key), forged, MANIFEST_MEDIA_TYPE)
        assert not fetch_entry(runner / other_key, "base", NAMES, check_meta(other_inputs), env=env)
        # A manifest with one file left out.
        doc = json.loads(manifest)
        doc["layers"] = doc["layers"][:-1]
        client.put_manifest(
            entry_tag("base", final.name), json.dumps(doc).encode(), MANIFEST_MEDIA_TYPE
        )
        assert not fetch_entry(runner / final.name, "base", NAMES, check_meta(inputs), env=env)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(messages) == 3 and all(m.startswith("REFUSED base ") for m in messages)
    assert "is not a application/vnd.goldsmith.cache.v1 for base" in messages[0]
    assert "its meta.json names other inputs than its key's" in messages[1]
    assert "it lacks ['meta.json']" in messages[2]
    assert not runner.exists() or not any(runner.iterdir())


def test_a_base_is_bootstrapped_once_then_fetched_and_a_bad_one_replaced(
    plain: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """bootstrap_base with the registry cache, its bootstrap replaced by a
    fake that makes a small base (this test boots nothing)."""
    bootstraps: list[Path] = []

    def fake_bootstrap(
        work: Path, base: DebootstrapBase, inputs: dict[str, object], *_: object
    ) -> None:
        bootstraps.append(work)
        make_base(work, inputs)

    monkeypatch.setattr(base_module, "bootstrap_into", fake_bootstrap)
    for name, value in cache_env(plain, "ci/bootstrap").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "runner-1"))
    first = base_module.bootstrap_base(DEBIAN)
    assert len(bootstraps) == 1
    made = snapshot(first.path.parent)

    # A second runner fetches it: no bootstrap, the same bytes and digest.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "runner-2"))
    second = base_module.bootstrap_base(DEBIAN)
    assert len(bootstraps) == 1
    assert second.path != first.path and second.sha256 == first.sha256
    assert {k: v for k, v in snapshot(second.path.parent).items() if k in NAMES} == {
        k: v for k, v in made.items() if k in NAMES
    }

    # Altered in the registry: a third runner refuses it, bootstraps, and
    # pushes its own base in its place, which a fourth runner then fetches.
    blob = plain.blob("sha256:" + first.sha256)
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "runner-3"))
    with caplog.at_level(logging.ERROR, logger="goldsmith"):
        third = base_module.bootstrap_base(DEBIAN)
    assert len(bootstraps) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert [m[:13] for m in errors] == ["REFUSED base "]
    assert third.sha256 == hash_file(third.path)["sha256"] != first.sha256
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "runner-4"))
    fourth = base_module.bootstrap_base(DEBIAN)
    assert len(bootstraps) == 2 and fourth.sha256 == third.sha256


def test_an_unreachable_registry_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {
        "GOLDSMITH_CACHE": f"oci+http://127.0.0.1:{free_port()}/bases",
        "DOCKER_CONFIG": "/nonexistent",
    }
    inputs = {"suite": "bookworm", "test": "unreachable"}
    with caplog.at_level(logging.WARNING, logger="goldsmith"):
        final = put_entry(tmp_path, inputs, env)  # shared nowhere, kept here
        assert sorted(snapshot(final)) == sorted(NAMES)
        other = tmp_path / "other" / "bases" / final.name
        assert not fetch_entry(other, "base", NAMES, check_meta(inputs), env=env)
    assert not other.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2
    assert f"base {final.name[:12]} not shared through oci+http://127.0.0.1:" in warnings[0]
    assert "unreachable" in warnings[0]
    assert warnings[1].startswith("registry cache oci+http://127.0.0.1:")
    assert "unavailable" in warnings[1] and "making base" in warnings[1]


def test_tls_with_the_cache_ca_file_and_basic_auth(
    secure: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert secure.ca is not None
    creds = {"GOLDSMITH_REGISTRY_USERNAME": USER, "GOLDSMITH_REGISTRY_PASSWORD": PASSWORD}
    env = cache_env(secure, "ci/secure", GOLDSMITH_CACHE_CA_FILE=str(secure.ca), **creds)
    inputs = {"suite": "bookworm", "test": "tls"}
    final = put_entry(tmp_path, inputs, env)
    other = tmp_path / "other" / "bases" / final.name
    assert fetch_entry(other, "base", NAMES, check_meta(inputs), env=env)
    assert snapshot(other) == snapshot(final)
    # Without the CA the registry's certificate is not trusted: a warning.
    untrusted = {k: v for k, v in env.items() if k != "GOLDSMITH_CACHE_CA_FILE"}
    with caplog.at_level(logging.WARNING, logger="goldsmith"):
        assert not fetch_entry(
            tmp_path / "third" / "bases" / final.name, "base", NAMES, env=untrusted
        )
    assert "TLS verification failed" in caplog.records[-1].getMessage()


def test_a_check_that_refuses_leaves_nothing(plain: Registry, tmp_path: Path) -> None:
    env = cache_env(plain, "ci/check")
    inputs = {"suite": "bookworm", "test": "check"}
    final = put_entry(tmp_path, inputs, env)
    seen: dict[str, str] = {}

    def refuse(folder: Path, digests: Mapping[str, str]) -> None:
        seen.update(digests)
        assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)
        raise CacheEntryError("not today")

    other = tmp_path / "other" / "bases" / final.name
    assert not fetch_entry(other, "base", NAMES, refuse, env=env)
    assert not other.exists()
    assert_no_temporary_folders(other.parent.parent)
    assert seen == {name: hash_file(final / name)["sha256"] for name in NAMES}
