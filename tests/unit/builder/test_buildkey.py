"""The build key: it moves when any input moves, and only then."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

import builder
from builder import buildkey
from builder.base import bootstrap_inputs
from builder.buildkey import (
    BUILD_KEY_FIELD,
    base_identity,
    build_key_inputs,
    compute_build_key,
    recorded_build_key,
)
from builder.errors import InputError
from builder.spec import DebootstrapBase, FileBase, TemplateSpec, load_spec
from hardening.profile import Profile, load_profile

SCRIPT = "#!/bin/bash\necho applying\n"

SPEC = """\
name: debian-12-baseline
version: 1.0.0
base:
  debootstrap:
    suite: bookworm
profile: baseline
packages: [curl]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profile("baseline")


@pytest.fixture
def spec(tmp_path: Path) -> TemplateSpec:
    return load_spec(write(tmp_path, "spec.yaml", SPEC))


def key_of(spec: TemplateSpec, profile: Profile, script: str = SCRIPT) -> str:
    return compute_build_key(spec, profile, base_identity(spec), script)


def test_key_is_a_sha256_and_stable(spec: TemplateSpec, profile: Profile) -> None:
    first = key_of(spec, profile)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first)
    assert key_of(spec, profile) == first


def test_key_is_the_digest_of_the_sorted_compact_json(spec: TemplateSpec, profile: Profile) -> None:
    document = build_key_inputs(spec, profile, base_identity(spec), SCRIPT)
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert key_of(spec, profile) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert document["goldsmith"] == builder.__version__
    assert document["profile"] == profile.digest
    assert document["apply_script"] == hashlib.sha256(SCRIPT.encode()).hexdigest()
    assert document["spec"]["version"] == "1.0.0"


def test_dict_key_order_does_not_matter(spec: TemplateSpec, profile: Profile) -> None:
    identity = base_identity(spec)
    reordered = dict(reversed(list(identity.items())))
    reordered["inputs"] = dict(reversed(list(identity["inputs"].items())))
    assert list(reordered) != list(identity)
    assert compute_build_key(spec, profile, reordered, SCRIPT) == compute_build_key(
        spec, profile, identity, SCRIPT
    )


def test_moving_or_commenting_the_spec_keeps_the_key(
    tmp_path: Path, spec: TemplateSpec, profile: Profile
) -> None:
    (tmp_path / "elsewhere").mkdir()
    moved = load_spec(write(tmp_path / "elsewhere", "other.yaml", "# a comment\n" + SPEC))
    assert moved.sha256 != spec.sha256
    assert key_of(moved, profile) == key_of(spec, profile)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("version: 1.0.0", "version: 1.0.1"),
        ("name: debian-12-baseline", "name: debian-12-other"),
        ("suite: bookworm", "suite: trixie"),
        ("packages: [curl]", "packages: [curl, vim]"),
        ("packages: [curl]", "packages: [curl]\nupgrade: false"),
        ("packages: [curl]", "packages: [curl]\ndisk_size: 8G"),
        ("packages: [curl]", "packages: [curl]\nvm: {memory: 4096}"),
        ("packages: [curl]", "packages: [curl]\ntimeouts: {boot: 60}"),
        ("suite: bookworm", "suite: bookworm\n    mirror: http://mirror.example/debian"),
    ],
)
def test_each_spec_field_changes_the_key(
    tmp_path: Path, spec: TemplateSpec, profile: Profile, old: str, new: str
) -> None:
    assert old in SPEC
    other = load_spec(write(tmp_path, "changed.yaml", SPEC.replace(old, new)))
    assert key_of(other, profile) != key_of(spec, profile)


def test_profile_digest_changes_the_key(
    tmp_path: Path, spec: TemplateSpec, profile: Profile
) -> None:
    custom = write(
        tmp_path,
        "custom.yaml",
        """\
        extends: baseline
        id: custom
        parameters:
          ssh_max_auth_tries: 3
        """,
    )
    changed = load_profile(custom)
    assert changed.digest != profile.digest
    assert key_of(spec, changed) != key_of(spec, profile)
    # Only the digest counts, not the object it came from.
    same = dataclasses.replace(profile, title="another title")
    assert key_of(spec, same) == key_of(spec, profile)


def test_apply_script_changes_the_key(spec: TemplateSpec, profile: Profile) -> None:
    assert key_of(spec, profile, SCRIPT + "\n") != key_of(spec, profile, SCRIPT)


def test_base_identity_changes_the_key(spec: TemplateSpec, profile: Profile) -> None:
    identity = base_identity(spec)
    inputs = {**identity["inputs"], "recipe": identity["inputs"]["recipe"] + 1}
    changed = {**identity, "inputs": inputs}
    assert compute_build_key(spec, profile, changed, SCRIPT) != key_of(spec, profile)


def test_goldsmith_version_changes_the_key(
    spec: TemplateSpec, profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = key_of(spec, profile)
    monkeypatch.setattr(buildkey, "__version__", "99.0.0")
    assert key_of(spec, profile) != before


def test_debootstrap_identity_is_the_cache_inputs(spec: TemplateSpec) -> None:
    assert isinstance(spec.base, DebootstrapBase)
    identity = base_identity(spec)
    assert identity["source"] == "debootstrap"
    assert identity["inputs"] == bootstrap_inputs(spec.base)


def file_spec(folder: Path, image: Path, sha256: str | None) -> TemplateSpec:
    pin = f"\n    sha256: {sha256}" if sha256 else ""
    text = f"""\
name: from-file
version: 1.0.0
base:
  file:
    path: {image}{pin}
profile: baseline
"""
    return load_spec(write(folder, "file.yaml", text))


def test_pinned_file_base_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "base.qcow2"
    image.write_bytes(b"pretend image")
    pin = "cd" * 32
    spec = file_spec(tmp_path, image, pin)

    def refuse(*args: Any, **kwargs: Any) -> dict[str, str]:
        raise AssertionError("a pinned base must not be hashed")

    monkeypatch.setattr(buildkey, "hash_file", refuse)
    assert base_identity(spec) == {"source": "file", "sha256": pin}


def test_unpinned_file_base_is_hashed(tmp_path: Path, profile: Profile) -> None:
    image = tmp_path / "base.qcow2"
    image.write_bytes(b"pretend image")
    spec = file_spec(tmp_path, image, None)
    digest = hashlib.sha256(b"pretend image").hexdigest()
    assert base_identity(spec) == {"source": "file", "sha256": digest}

    before = key_of(spec, profile)
    image.write_bytes(b"another image")
    assert key_of(spec, profile) != before


def test_unreadable_unpinned_file_is_an_input_error(tmp_path: Path) -> None:
    image = tmp_path / "base.qcow2"
    image.write_bytes(b"x")
    spec = file_spec(tmp_path, image, None)
    image.unlink()
    with pytest.raises(InputError, match=r"base\.file\.path"):
        base_identity(spec)
    assert isinstance(spec.base, FileBase)


def test_url_identity_is_its_pin(tmp_path: Path) -> None:
    pin = "ef" * 32
    text = f"""\
name: from-url
version: 1.0.0
base:
  url:
    url: https://cloud.example/debian-12.qcow2
    sha256: {pin}
profile: baseline
"""
    spec = load_spec(write(tmp_path, "url.yaml", text))
    assert base_identity(spec) == {"source": "url", "sha256": pin}


def test_recorded_build_key(tmp_path: Path) -> None:
    assert recorded_build_key(tmp_path) is None
    (tmp_path / "build.json").write_text("{not json")
    assert recorded_build_key(tmp_path) is None
    (tmp_path / "build.json").write_text(json.dumps({BUILD_KEY_FIELD: 3}))
    assert recorded_build_key(tmp_path) is None
    key = "sha256:" + "0" * 64
    (tmp_path / "build.json").write_text(json.dumps({"schema": "x", BUILD_KEY_FIELD: key}))
    assert recorded_build_key(tmp_path) == key


@pytest.mark.parametrize(
    "content",
    [
        '{"build_key": "sha256:' + "1" * 64 + '", "build_key": "sha256:' + "2" * 64 + '"}',
        "[" * 10_000 + "]" * 10_000,
        '{"build_key": "sha256:' + "0" * 64 + '", "n": ' + "9" * 5000 + "}",
        b"\xff\xfe",
    ],
    ids=["duplicate-key", "deep", "huge-int", "not-utf8"],
)
def test_a_build_record_read_strictly_has_no_key(tmp_path: Path, content: str | bytes) -> None:
    # Two readers must never see two keys in one build.json: a duplicate is no key.
    data = content.encode() if isinstance(content, str) else content
    (tmp_path / "build.json").write_bytes(data)
    assert recorded_build_key(tmp_path) is None


def test_a_fifo_build_record_has_no_key_and_no_wait(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "build.json")
    assert recorded_build_key(tmp_path) is None
