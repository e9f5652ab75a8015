"""Lineage: the version rule for rebuilds, and history over artifact folders
built in tmp_path (build.json, validation.json and unsigned test manifests)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from test_outdated import run_cli, statement, write_envelope

from builder.errors import InputError
from builder.lineage import (
    find_artifacts,
    history,
    latest,
    next_version,
    release_version,
)

# --- versions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        ("1.2.3", "1.2.4"),
        ("0.9.9", "0.9.10"),
        ("1.2", "1.2.1"),
        ("1", "1.0.1"),
        ("1.2.3-2", "1.2.4"),
        ("1.2.3-rc.1", "1.2.4"),
        ("1.2.3+build.7", "1.2.4"),
        ("1.2.3-1+b2", "1.2.4"),
        ("10.20.30", "10.20.31"),
    ],
)
def test_next_version_bumps_the_patch_level(previous: str, expected: str) -> None:
    assert next_version(previous) == expected


@pytest.mark.parametrize("previous", ["", "1.2.3.4", "v1.2.3", "1.02.3", "1.2.x", "1.2.3-", "1..2"])
def test_next_version_refuses_what_is_not_semver_like(previous: str) -> None:
    with pytest.raises(ValueError, match="set the version in the spec"):
        next_version(previous)


@pytest.mark.parametrize(
    ("spec", "previous", "expected"),
    [
        ("1.0.0", None, "1.0.0"),  # a first release is the spec's
        ("1.0.0", "1.0.0", "1.0.1"),  # a rebuild of an unchanged spec
        ("1.0.0", "1.0.3", "1.0.4"),  # ... again, after earlier rebuilds
        ("1.1.0", "1.0.3", "1.1.0"),  # bumped by hand in the spec: used as written
        ("2.0.0-rc.1", "1.0.3", "2.0.0-rc.1"),
        ("1.0.3", "1.0.3-rc.1", "1.0.3"),  # a release sorts above its pre-release
        ("1.0.3-rc.1", "1.0.3-rc.1", "1.0.4"),
        ("1.0.3-rc.1", "1.0.3", "1.0.4"),
    ],
)
def test_release_version(spec: str, previous: str | None, expected: str) -> None:
    assert release_version(spec, previous) == expected


# --- artifact folders -----------------------------------------------------------

OLD_PACKAGES = [
    ("libc6", "2.36-9+deb12u4", "amd64"),
    ("openssl", "3.0.11-1~deb12u2", "amd64"),
    ("telnet", "0.17+2.4-2", "amd64"),
    ("tzdata", "2024b-0+deb12u1", "all"),
]
NEW_PACKAGES = [
    ("libc6", "2.36-9+deb12u9", "amd64"),
    ("openssl", "3.0.15-1~deb12u1", "amd64"),
    ("tzdata", "2024a-0+deb12u1", "all"),
    ("vim-tiny", "2:9.0.1378-2", "amd64"),
]


def make_artifact(
    root: Path,
    name: str,
    version: str,
    *,
    finished: str,
    image: str,
    base: str = "b0" * 32,
    profile: str = "sha256:" + "c0" * 32,
    spec: str = "d0" * 32,
    packages: Sequence[tuple[str, str, str]] | None = OLD_PACKAGES,
    signed: bool = True,
    previous: Path | None = None,
    folder: str | None = None,
) -> Path:
    """An artifact folder with build.json and, if ``signed``, a (dummy-signed) manifest."""
    where = root / (folder or f"{name}-{version}")
    where.mkdir(parents=True)
    record = {
        "schema": "https://goldsmith.dev/build/v1",
        "template": {"name": name, "version": version},
        "spec": {"path": "/t/spec.yaml", "sha256": spec},
        "profile": {"id": "baseline", "version": "1", "digest": profile, "source": "/p.yaml"},
        "base": {
            "source": "debootstrap",
            "name": "debian-bookworm-debootstrap",
            "uri": "http://deb.debian.org/debian",
            "digest": {"sha256": base},
        },
        "image": {"path": "disk.qcow2", "sha256": image, "sha512": "0", "virtual_size": 1},
        "tools": {"goldsmith": "0.1.0", "qemu": "7.2.22"},
        "accelerator": "tcg",
        "build_vm": {"machine_id": "44" * 16, "host_keys": {}},
        "started": finished,
        "finished": finished,
    }
    (where / "build.json").write_text(json.dumps(record, indent=2))
    if signed:
        prev = hashlib.sha256(previous.read_bytes()).hexdigest() if previous else None
        doc = statement(
            name=name,
            version=version,
            image_sha256=image,
            packages=packages or [],
            previous=prev,
            build_record_sha256=hashlib.sha256((where / "build.json").read_bytes()).hexdigest(),
        )
        write_envelope(where / "manifest.dsse.json", doc)
    elif packages is not None:
        validation = {
            "schema": "https://goldsmith.dev/validation/v1",
            "packages": [{"name": n, "version": v, "architecture": a} for n, v, a in packages],
        }
        (where / "validation.json").write_text(json.dumps(validation))
    return where


def manifest(folder: Path) -> Path:
    return folder / "manifest.dsse.json"


def test_a_chain_in_order_with_what_changed(tmp_path: Path) -> None:
    root = tmp_path / "out"
    first = make_artifact(root, "demo", "1.0.0", finished="2026-10-01T08:00:00Z", image="a1" * 32)
    second = make_artifact(
        root,
        "demo",
        "1.0.1",
        finished="2026-11-01T08:00:00Z",
        image="a2" * 32,
        base="b1" * 32,
        packages=NEW_PACKAGES,
        previous=manifest(first),
    )
    third = make_artifact(
        root,
        "demo",
        "1.0.2",
        finished="2026-11-27T08:00:00Z",
        image="a3" * 32,
        base="b1" * 32,
        profile="sha256:" + "c1" * 32,
        packages=NEW_PACKAGES,
        previous=manifest(second),
    )

    entries = history(root)

    assert [e.version for e in entries] == ["1.0.0", "1.0.1", "1.0.2"]
    one, two, three = entries
    assert one.previous is None and one.changes is None
    assert one.manifest_sha256 == hashlib.sha256(manifest(first).read_bytes()).hexdigest()
    assert one.image_sha256 == "a1" * 32
    assert one.built == "2026-10-01T08:00:00Z"
    assert one.approved is not None

    assert two.previous == first
    assert two.previous_manifest_sha256 == one.manifest_sha256
    assert two.changes is not None
    assert two.changes.base is not None
    assert (two.changes.base.old, two.changes.base.new) == ("b0" * 32, "b1" * 32)
    assert two.changes.profile is None and two.changes.spec is None
    changes = {p.name: p.kind for p in two.changes.packages or ()}
    assert changes == {
        "libc6": "upgraded",
        "openssl": "upgraded",
        "telnet": "removed",
        "tzdata": "downgraded",  # 2024a sorts before 2024b
        "vim-tiny": "added",
    }
    assert two.changes.counts()["upgraded"] == 2

    assert three.previous == second
    assert three.changes is not None
    assert three.changes.base is None
    assert three.changes.profile is not None
    assert three.changes.packages == ()
    assert latest(entries, "demo") == three
    assert latest(entries, "nothing") is None
    assert all(not e.notes for e in entries)
    assert third.name == "demo-1.0.2"


def test_unsigned_and_foreign_entries(tmp_path: Path) -> None:
    root = tmp_path / "out"
    first = make_artifact(root, "demo", "1.0.0", finished="2026-10-01T08:00:00Z", image="a1" * 32)
    make_artifact(
        root,
        "demo",
        "1.0.1",
        finished="2026-11-01T08:00:00Z",
        image="a2" * 32,
        signed=False,
        packages=NEW_PACKAGES,
    )
    make_artifact(
        root / "nested",
        "alpha",
        "2.0.0",
        finished="2026-12-01T08:00:00Z",
        image="a9" * 32,
        previous=manifest(first),  # replaced demo 1.0.0 under another name: still linked
    )
    # Neither a work folder nor a failed build is history.
    make_artifact(root, "demo", "9.9.9", finished="x", image="ff" * 32, folder=".demo.work-1234")
    make_artifact(
        root, "demo", "9.9.8", finished="x", image="fe" * 32, folder="demo-9.9.8.FAILED-2026"
    )

    entries = history(root)
    assert [(e.name, e.version) for e in entries] == [
        ("demo", "1.0.0"),
        ("alpha", "2.0.0"),
        ("demo", "1.0.1"),
    ]
    unsigned = entries[2]
    assert unsigned.manifest_sha256 is None and unsigned.manifest is None
    assert unsigned.packages is not None and len(unsigned.packages) == 4  # from validation.json
    assert unsigned.changes is None
    assert entries[1].previous == first


def test_a_missing_predecessor_is_a_note(tmp_path: Path) -> None:
    elsewhere = make_artifact(
        tmp_path / "elsewhere", "demo", "1.0.0", finished="2026-10-01", image="a1" * 32
    )
    root = tmp_path / "out"
    make_artifact(
        root, "demo", "1.0.1", finished="2026-11-01", image="a2" * 32, previous=manifest(elsewhere)
    )
    (entry,) = history(root)
    assert entry.previous is None
    assert entry.previous_manifest_sha256 is not None
    assert any("is not here" in n for n in entry.notes)


def test_a_fork_lists_both_successors_oldest_first(tmp_path: Path) -> None:
    root = tmp_path / "out"
    first = make_artifact(root, "demo", "1.0.0", finished="2026-10-01", image="a1" * 32)
    for version, day in (("1.0.2", "2026-11-02"), ("1.0.1", "2026-11-01")):
        make_artifact(
            root, "demo", version, finished=day, image=version * 10, previous=manifest(first)
        )
    entries = history(root)
    assert [e.version for e in entries] == ["1.0.0", "1.0.1", "1.0.2"]
    assert latest(entries, "demo") is not None
    assert latest(entries, "demo").version == "1.0.2"  # type: ignore[union-attr]


def test_mismatched_manifest_and_record_are_noted(tmp_path: Path) -> None:
    root = tmp_path / "out"
    folder = make_artifact(root, "demo", "1.0.0", finished="2026-10-01", image="a1" * 32)
    record = json.loads((folder / "build.json").read_text())
    record["image"]["sha256"] = "ff" * 32
    (folder / "build.json").write_text(json.dumps(record))
    (entry,) = history(root)
    assert entry.notes == (
        "the manifest names another image than build.json",
        "build.json is not the build record the manifest names",
    )


def test_bad_records_are_input_errors(tmp_path: Path) -> None:
    root = tmp_path / "out"
    folder = make_artifact(root, "demo", "1.0.0", finished="d", image="a1" * 32, signed=False)
    (folder / "build.json").write_text("{")
    with pytest.raises(InputError, match=r"build\.json"):
        history(root)
    record = {
        "schema": "https://goldsmith.dev/build/v1",
        "template": {"name": "demo"},
    }
    (folder / "build.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"template\.version"):
        history(root)
    with pytest.raises(InputError, match="expected a folder"):
        find_artifacts(tmp_path / "absent")


def test_history_cli_text_and_json(tmp_path: Path) -> None:
    root = tmp_path / "out"
    first = make_artifact(root, "demo", "1.0.0", finished="2026-10-01", image="a1" * 32)
    make_artifact(
        root,
        "demo",
        "1.0.1",
        finished="2026-11-01",
        image="a2" * 32,
        packages=NEW_PACKAGES,
        previous=manifest(first),
    )
    result = run_cli("history", str(root))
    assert result.exit_code == 0, result.output
    assert "demo 1.0.1" in result.output
    assert "replaces  demo-1.0.0" in result.output
    assert "upgraded   openssl (amd64) 3.0.11-1~deb12u2 -> 3.0.15-1~deb12u1" in result.output

    result = run_cli("history", str(root), "--json")
    assert result.exit_code == 0, result.output
    doc: list[dict[str, Any]] = json.loads(result.output)
    assert [e["version"] for e in doc] == ["1.0.0", "1.0.1"]
    assert doc[1]["previous"] == str(first)
    assert doc[1]["changes"]["packages"]["counts"]["added"] == 1
    assert doc[0]["manifest"]["sha256"] == doc[1]["previousManifest"]["sha256"]


def test_history_cli_empty_folder(tmp_path: Path) -> None:
    result = run_cli("history", str(tmp_path))
    assert result.exit_code == 0
    assert "no artifact folders" in result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"template": {}, "template": {}}', "duplicate key"),
        ("[" * 10_000 + "]" * 10_000, "nested deeper"),
        ('{"finished": ' + "9" * 5000 + "}", "more than 30 digits"),
        ('{"n": NaN}', "not a JSON number"),
    ],
)
def test_records_are_read_strictly(tmp_path: Path, content: str, expected: str) -> None:
    root = tmp_path / "out"
    folder = make_artifact(root, "demo", "1.0.0", finished="d", image="a1" * 32, signed=False)
    (folder / "build.json").write_text(content)
    with pytest.raises(InputError, match=expected) as info:
        history(root)
    assert str(folder / "build.json") in info.value.message


def test_a_fifo_record_is_an_input_error_not_a_hang(tmp_path: Path) -> None:
    root = tmp_path / "out"
    folder = make_artifact(root, "demo", "1.0.0", finished="d", image="a1" * 32, signed=False)
    (folder / "build.json").unlink()
    os.mkfifo(folder / "build.json")
    with pytest.raises(InputError, match="not a regular file"):
        history(root)
