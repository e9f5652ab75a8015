"""goldsmith sign: the statement it builds and everything it refuses to stamp.

The artifact folders here are test data: a small qcow2 from qemu-img, and
build.json / validation.json written per the data formats with results built
in the test. The helpers are shared with the verify and interop tests.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder.cli import cli
from builder.errors import GoldsmithError, InputError
from hardening.results import CheckResult, Status
from validate.dsse import PAYLOAD_TYPE_IN_TOTO, load_envelope
from validate.keys import KeyType, PrivateKey, generate_key, write_keypair
from validate.manifest import (
    BuildRecord,
    SigningError,
    build_statement,
    sign_artifact,
    write_manifest,
)
from validate.qcow2 import ImageError
from validate.results import Package, ValidationRun
from validate.statement import PREDICATE_TYPE, STATEMENT_TYPE

# Approvals an hour ago by the real clock, so the command line (which verifies at
# the real time) agrees with tests that pass ``now``; FIXED for literal timestamps.
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(hours=1)
FIXED = datetime.datetime(2026, 11, 27, 9, 0, 0, tzinfo=datetime.UTC)

GOOD_RESULTS = (
    CheckResult("SSH-01", "Root login disabled", "ssh", Status.passed, "no", "no", "high"),
    CheckResult("SYSCTL-01", "kptr_restrict", "sysctl", Status.passed, "2", "2"),
    CheckResult(
        "KMOD-03",
        "usb-storage disabled",
        "kmod",
        Status.waived,
        "blacklisted",
        "loaded",
        reason="USB passthrough needed by the CI runners (ticket OPS-12)",
    ),
    CheckResult("MNT-02", "/tmp noexec", "mount", Status.skipped, "noexec", "-", reason="no /tmp"),
    CheckResult("HYG-001", "builder key removed", "hygiene", Status.passed, "absent", "absent"),
)


PACKAGES = (
    Package("openssh-server", "1:9.2p1-2+deb12u3", "amd64", "openssh", "1:9.2p1-2+deb12u3"),
)


def sha(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest()


def make_qcow2(path: Path, size: str = "1M", *options: str) -> Path:
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2", *options, str(path), size]
    # LUKS creation times its key derivation with CPU-time samples and gives up
    # ("Unable to get accurate CPU usage") on a busy host; another try does it.
    for _ in range(4):
        if subprocess.run(cmd, cwd=path.parent, check=False).returncode == 0:
            return path
        path.unlink(missing_ok=True)
    subprocess.run(cmd, check=True, cwd=path.parent)
    return path


def write_records(
    artifact: Path,
    results: Sequence[CheckResult] = GOOD_RESULTS,
    *,
    name: str = "debian-12-baseline",
    version: str = "1.0.0",
) -> None:
    """build.json and validation.json describing artifact/disk.qcow2 as it is now."""
    image = artifact / "disk.qcow2"
    sha256, sha512 = sha(image)
    build = {
        "schema": "https://goldsmith.dev/build/v1",
        "template": {"name": name, "version": version},
        "spec": {"path": f"/abs/templates/{name}.yaml", "sha256": "11" * 32},
        "profile": {
            "id": "baseline",
            "version": "1",
            "digest": "sha256:" + "22" * 32,
            "source": "/abs/profiles/baseline.yaml",
        },
        "base": {
            "source": "debootstrap",
            "name": "debian-bookworm-debootstrap",
            "uri": "http://deb.debian.org/debian",
            "digest": {"sha256": "33" * 32},
            "inputs": {"suite": "bookworm"},
        },
        "image": {
            "path": "disk.qcow2",
            "sha256": sha256,
            "sha512": sha512,
            "virtual_size": 1048576,
            "size": image.stat().st_size,
        },
        "steps": [{"name": "boot", "seconds": 31.2, "status": "ok"}],
        "tools": {"goldsmith": "0.1.0", "qemu": "7.2.22", "qemu-img": "7.2.22"},
        "accelerator": "kvm",
        "build_vm": {"machine_id": "44" * 16, "host_keys": {"ssh-ed25519": "SHA256:abc"}},
        "sealed": ["/etc/machine-id (emptied)"],
        "started": "2026-11-27T08:00:00Z",
        "finished": "2026-11-27T08:20:00Z",
    }
    (artifact / "build.json").write_text(json.dumps(build, indent=2))
    ValidationRun(
        template_name=name,
        template_version=version,
        image_path="disk.qcow2",
        image_sha256=sha256,
        image_sha512=sha512,
        profile_id="baseline",
        profile_version="1",
        profile_digest="sha256:" + "22" * 32,
        started="2026-11-27T08:30:00Z",
        finished="2026-11-27T08:33:00Z",
        accelerator="tcg",
        goldsmith_version="0.1.0",
        timings={"boot": 30.0, "facts": 2.0, "checks": 1.0, "user_tests": 0.0, "total": 33.0},
        results=tuple(results),
        packages=PACKAGES,
    ).write(artifact / "validation.json")


def make_artifact(
    root: Path,
    results: Sequence[CheckResult] = GOOD_RESULTS,
    *,
    version: str = "1.0.0",
    size: str = "1M",
    qemu_options: Sequence[str] = (),
) -> Path:
    artifact = root / f"debian-12-baseline-{version}"
    artifact.mkdir()
    make_qcow2(artifact / "disk.qcow2", size, *qemu_options)
    write_records(artifact, results, version=version)
    return artifact


def make_key(root: Path, key_type: KeyType = KeyType.ed25519, name: str = "signing") -> Path:
    key_path = root / f"{name}.pem"
    write_keypair(generate_key(key_type), key_path, passphrase=None)
    return key_path


def stamp_unchecked(artifact: Path, key: PrivateKey, *, now: datetime.datetime = NOW) -> Path:
    """Sign whatever the folder holds, bypassing sign's refusals: how a careless or
    hostile signer would, so verify's own checks can be shown to stand alone."""
    validation = ValidationRun.load(artifact / "validation.json")
    build = BuildRecord.from_dict(
        json.loads((artifact / "build.json").read_text()), artifact / "build.json"
    )
    sha256, sha512 = sha(artifact / "disk.qcow2")
    statement = build_statement(
        build,
        validation,
        build_record_sha256="55" * 32,
        validation_record_sha256="66" * 32,
        image_sha256=sha256,
        image_sha512=sha512,
        virtual_size=1048576,
        keyid=key.keyid,
        approved_at=now,
        valid_until=now + datetime.timedelta(days=30),
    )
    return write_manifest(artifact, statement, key)


def read_statement(manifest: Path) -> dict[str, Any]:
    envelope = json.loads(manifest.read_bytes())
    statement: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return statement


@pytest.mark.parametrize("key_type", list(KeyType))
def test_sign_builds_the_statement_from_the_records(tmp_path: Path, key_type: KeyType) -> None:
    artifact = make_artifact(tmp_path)
    key_path = make_key(tmp_path, key_type)
    manifest = sign_artifact(artifact, key_path, now=FIXED)

    assert manifest == artifact / "manifest.dsse.json"
    envelope = json.loads(manifest.read_bytes())
    assert envelope["payloadType"] == PAYLOAD_TYPE_IN_TOTO
    assert len(envelope["signatures"]) == 1
    statement = read_statement(manifest)
    keyid = envelope["signatures"][0]["keyid"]
    sha256, sha512 = sha(artifact / "disk.qcow2")

    assert statement["_type"] == STATEMENT_TYPE
    assert statement["predicateType"] == PREDICATE_TYPE
    assert statement["subject"] == [
        {"name": "debian-12-baseline-1.0.0.qcow2", "digest": {"sha256": sha256, "sha512": sha512}}
    ]
    p = statement["predicate"]
    assert p["template"] == {
        "name": "debian-12-baseline",
        "version": "1.0.0",
        "format": "qcow2",
        "virtualSize": 1048576,
    }
    assert p["base"] == [
        {
            "name": "debian-bookworm-debootstrap",
            "uri": "http://deb.debian.org/debian",
            "digest": {"sha256": "33" * 32},
            "source": "debootstrap",
        }
    ]
    assert p["profile"] == {"id": "baseline", "version": "1", "digest": "sha256:" + "22" * 32}
    assert p["results"]["approved"] is True
    assert p["results"]["counts"] == {
        "passed": 3,
        "failed": 0,
        "error": 0,
        "waived": 1,
        "skipped": 1,
    }
    assert [c["id"] for c in p["results"]["controls"]] == [r.id for r in GOOD_RESULTS]
    assert p["waivers"] == [
        {
            "control": "KMOD-03",
            "reason": "USB passthrough needed by the CI runners (ticket OPS-12)",
            "expires": None,
        }
    ]
    bom_digest = hashlib.sha256((artifact / "sbom.cdx.json").read_bytes()).hexdigest()
    assert p["sbom"] == {
        "format": "goldsmith-dpkg/v1",
        "packages": [
            {
                "name": "openssh-server",
                "version": "1:9.2p1-2+deb12u3",
                "architecture": "amd64",
                "source": "openssh",
                "source_version": "1:9.2p1-2+deb12u3",
            }
        ],
        "cyclonedx": {
            "name": "sbom.cdx.json",
            "mediaType": "application/vnd.cyclonedx+json",
            "specVersion": "1.6",
            "digest": {"sha256": bom_digest},
        },
    }
    assert [(a["name"], a["predicateType"]) for a in p["attestations"]] == [
        ("sbom.dsse.json", "https://cyclonedx.org/bom"),
        ("provenance.dsse.json", "https://slsa.dev/provenance/v1"),
    ]
    assert p["builder"] == {"id": "https://goldsmith.dev/builder", "version": "0.1.0"}
    assert p["tools"] == {"qemu": "7.2.22", "goldsmith": "0.1.0"}
    # Names that hold on any machine, never the signer's host paths.
    assert p["inputs"] == {
        "spec": {"uri": "debian-12-baseline.yaml", "digest": {"sha256": "11" * 32}},
        "profile": {"uri": "baseline.yaml", "digest": {"sha256": "22" * 32}},
    }
    build_digest = hashlib.sha256((artifact / "build.json").read_bytes()).hexdigest()
    validation_digest = hashlib.sha256((artifact / "validation.json").read_bytes()).hexdigest()
    assert p["build"] == {
        "accelerator": "kvm",
        "started": "2026-11-27T08:00:00Z",
        "finished": "2026-11-27T08:20:00Z",
        "record": {"digest": {"sha256": build_digest}},
    }
    assert p["validation"] == {
        "finished": "2026-11-27T08:33:00Z",
        "accelerator": "tcg",
        "record": {"digest": {"sha256": validation_digest}},
    }
    assert p["approval"] == {
        "time": "2026-11-27T09:00:00Z",
        "keyid": keyid,
        "validUntil": "2027-05-26T09:00:00Z",  # 180 days by default
    }
    assert "previousManifest" not in p
    # Only the signed files appear: the scratch folder used for the rename is gone.
    assert sorted(f.name for f in artifact.iterdir()) == [
        "build.json",
        "disk.qcow2",
        "manifest.dsse.json",
        "provenance.dsse.json",
        "sbom.cdx.json",
        "sbom.dsse.json",
        "validation.json",
    ]


def test_sign_records_the_previous_manifest_digest(tmp_path: Path) -> None:
    old = make_artifact(tmp_path, version="1.0.0")
    new = make_artifact(tmp_path, version="1.0.1")
    key = make_key(tmp_path)
    previous = sign_artifact(old, key, now=NOW)
    manifest = sign_artifact(new, key, previous=previous, valid_for_days=7, now=NOW)
    predicate = read_statement(manifest)["predicate"]
    assert predicate["previousManifest"] == {
        "digest": {"sha256": hashlib.sha256(previous.read_bytes()).hexdigest()}
    }
    week = NOW + datetime.timedelta(days=7)
    assert predicate["approval"]["validUntil"] == week.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_sign_refuses_a_previous_manifest_that_is_not_one(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    bogus = tmp_path / "old.json"
    bogus.write_text("[]")
    with pytest.raises(InputError, match=r"DSSE envelope"):
        sign_artifact(artifact, make_key(tmp_path), previous=bogus, now=NOW)


def test_sign_refuses_a_failed_validation(tmp_path: Path) -> None:
    failed = CheckResult("SSH-02", "No passwords", "ssh", Status.failed, "no", "yes", "high")
    artifact = make_artifact(tmp_path, (*GOOD_RESULTS, failed))
    with pytest.raises(SigningError, match=r"did not approve this template \(1 failed"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)
    assert not (artifact / "manifest.dsse.json").exists()


def test_sign_refuses_when_the_file_says_not_approved(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    record = json.loads((artifact / "validation.json").read_text())
    record["approved"] = False
    (artifact / "validation.json").write_text(json.dumps(record))
    with pytest.raises(SigningError, match=r"did not approve"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)


def test_sign_refuses_an_image_validation_did_not_see(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    with open(artifact / "disk.qcow2", "r+b") as f:  # the image changed after validation
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(SigningError, match=r"validation record names a different image"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)
    assert not (artifact / "manifest.dsse.json").exists()


def test_sign_refuses_a_build_record_of_another_image(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    record = json.loads((artifact / "build.json").read_text())
    record["image"]["sha512"] = "00" * 64
    (artifact / "build.json").write_text(json.dumps(record))
    with pytest.raises(SigningError, match=r"build record names a different image"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)


def test_sign_refuses_without_validation(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    (artifact / "validation.json").unlink()
    with pytest.raises(SigningError, match=r"validation.json: not found") as caught:
        sign_artifact(artifact, make_key(tmp_path), now=NOW)
    assert caught.value.exit_code == 1
    assert "goldsmith validate" in caught.value.diagnostics()


def test_sign_refuses_an_image_with_a_backing_file(tmp_path: Path) -> None:
    make_qcow2(tmp_path / "base.qcow2")
    artifact = make_artifact(tmp_path, qemu_options=["-b", "../base.qcow2", "-F", "qcow2"])
    with pytest.raises(ImageError, match=r"backing file"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)


def test_sign_refuses_an_image_with_an_external_data_file(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path, qemu_options=["-o", "data_file=data.raw,data_file_raw=on"])
    with pytest.raises(ImageError, match=r"external data file"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)


def test_sign_names_the_bad_field_of_a_build_record(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    record = json.loads((artifact / "build.json").read_text())
    del record["tools"]["qemu"]
    (artifact / "build.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"build.json: tools.qemu: expected the tool's version"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)


def test_resigning_without_ssh_key_drops_a_stale_ssh_signature(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    stale = artifact / "manifest.dsse.json.sig"
    stale.write_text("-----BEGIN SSH SIGNATURE-----\n")
    sign_artifact(artifact, make_key(tmp_path), now=NOW)
    assert not stale.exists()


def test_sign_with_an_encrypted_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    artifact = make_artifact(tmp_path)
    key_path = tmp_path / "enc.pem"
    write_keypair(generate_key(), key_path, passphrase="correct horse")
    with pytest.raises(InputError, match=r"encrypted and no passphrase"):
        sign_artifact(artifact, key_path, now=NOW, passphrase=lambda _p: None)
    monkeypatch.setenv("GOLDSMITH_KEY_PASSPHRASE", "correct horse")
    assert sign_artifact(artifact, key_path, now=NOW).is_file()


def test_sign_command(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    key_path = make_key(tmp_path)
    result = CliRunner().invoke(cli, ["sign", str(artifact), "--key", str(key_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(artifact / "manifest.dsse.json")
    assert load_envelope(artifact / "manifest.dsse.json").payload_type == PAYLOAD_TYPE_IN_TOTO


def test_sign_command_refusal_is_one_line_and_exit_1(tmp_path: Path) -> None:
    failed = CheckResult("SSH-02", "No passwords", "ssh", Status.failed, "no", "yes", "high")
    artifact = make_artifact(tmp_path, (failed,))
    key_path = make_key(tmp_path)
    result = CliRunner().invoke(cli, ["sign", str(artifact), "--key", str(key_path)])
    assert result.exit_code == 1
    assert "did not approve" in result.stderr
    assert "Traceback" not in result.output


def test_sign_command_bad_key_is_exit_2(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    result = CliRunner().invoke(cli, ["sign", str(artifact), "--key", str(bad)])
    assert result.exit_code == 2
    assert "expected a PEM private key" in result.stderr


def test_signing_error_is_a_goldsmith_error() -> None:
    assert issubclass(SigningError, GoldsmithError)
    assert SigningError("x").exit_code == 1


# --- images and evidence sign must not stamp ------------------------------------------


def test_sign_refuses_an_image_with_internal_snapshots(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    image = artifact / "disk.qcow2"
    subprocess.run(["qemu-img", "snapshot", "-c", "pre-seal", str(image)], check=True)
    write_records(artifact)  # the records name the image as it now is, snapshot and all
    with pytest.raises(ImageError, match=r"holds 1 internal snapshot"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)
    assert not (artifact / "manifest.dsse.json").exists()


def test_sign_refuses_a_luks_encrypted_image(tmp_path: Path) -> None:
    options = [
        "--object",
        "secret,id=sec0,data=correct-horse",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=50",
    ]
    artifact = make_artifact(tmp_path, qemu_options=options)
    with pytest.raises(ImageError, match=r"is encrypted \(LUKS\)"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)
    assert not (artifact / "manifest.dsse.json").exists()


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"id": "cis-level1-server", "digest": "sha256:" + "77" * 32}, r"'cis-level1-server'"),
        ({"digest": "sha256:" + "77" * 32}, r"sha256:7777"),  # same id, another digest
        ({"id": "strict"}, r"'strict'"),  # another id, the build's digest
    ],
)
def test_sign_refuses_validation_relabelled_with_another_profile(
    tmp_path: Path, profile: dict[str, str], message: str
) -> None:
    artifact = make_artifact(tmp_path)
    record = json.loads((artifact / "validation.json").read_text())
    record["profile"].update(profile)
    (artifact / "validation.json").write_text(json.dumps(record))
    with pytest.raises(SigningError, match=rf"validated against profile .*{message}") as caught:
        sign_artifact(artifact, make_key(tmp_path), now=NOW)
    assert "refusing to sign" in caught.value.message
    assert not (artifact / "manifest.dsse.json").exists()


def test_sign_refuses_duplicate_control_ids(tmp_path: Path) -> None:
    failed = CheckResult("SSH-01", "Root login disabled", "ssh", Status.failed, "no", "yes")
    artifact = make_artifact(tmp_path, (failed, *GOOD_RESULTS))  # SSH-01 failed, then passed
    with pytest.raises(InputError, match=r"results\[1\].id: duplicate control id 'SSH-01'"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)


@pytest.mark.parametrize("record", ["validation.json", "build.json"])
def test_sign_refuses_a_record_with_a_duplicated_key(tmp_path: Path, record: str) -> None:
    artifact = make_artifact(tmp_path)
    path = artifact / record
    text = path.read_text()
    # A second "template" key after the first: some readers take the first, some the last.
    path.write_text(text.rstrip().removesuffix("}") + ', "template": {"name": "x"}}')
    with pytest.raises(InputError, match=rf"{record}: expected a JSON document.*duplicate key"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)


def test_sign_names_the_bad_field_of_a_validation_record(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    record = json.loads((artifact / "validation.json").read_text())
    record["template"]["version"] = 100
    (artifact / "validation.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"validation.json: template.version: expected a string"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)


def test_sign_refuses_a_fifo_for_a_key_or_a_record(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    fifo = tmp_path / "key.pem"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"key.pem: key file is not a regular file"):
        sign_artifact(artifact, fifo, now=NOW)
    with pytest.raises(InputError, match=r"key file is not a regular file"):
        sign_artifact(artifact, Path("/dev/zero"), now=NOW)
    (artifact / "validation.json").unlink()
    os.mkfifo(artifact / "validation.json")
    with pytest.raises(InputError, match=r"validation.json: cannot be read as a record"):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)


def test_sign_command_escapes_what_the_records_say(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    record = json.loads((artifact / "validation.json").read_text())
    record["profile"]["id"] = "x\r\x1b[2KTRUSTED: fake"
    (artifact / "validation.json").write_text(json.dumps(record))
    result = CliRunner().invoke(cli, ["sign", str(artifact), "--key", str(make_key(tmp_path))])
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\r" not in result.output
    assert "x\\r\\x1b[2KTRUSTED: fake" in result.stderr


STEP = {
    "index": 0,
    "kind": "file",
    "name": "site configuration",
    "inputs": [{"path": "files/site.conf", "sha256": "ab" * 32}],
    "env_from_host": ["TOKEN"],
    "seconds": 1.5,
}


def test_sign_lists_every_provisioning_step_and_its_inputs(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    record = json.loads((artifact / "build.json").read_text())
    record["provision"] = [STEP, {**STEP, "index": 1, "extra": "dropped"}]
    (artifact / "build.json").write_text(json.dumps(record))
    statement = read_statement(sign_artifact(artifact, make_key(tmp_path), now=NOW))
    steps = statement["predicate"]["provision"]
    assert steps[0] == {
        "index": 0,
        "kind": "file",
        "name": "site configuration",
        "inputs": [{"path": "files/site.conf", "sha256": "ab" * 32}],
        "envFromHost": ["TOKEN"],
        "seconds": 1.5,
    }
    assert "extra" not in steps[1]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"inputs": "x"}, "provision[0].inputs"),
        ({"inputs": [{"path": "a", "sha256": "XYZ"}]}, "provision[0].inputs[0].sha256"),
        ({"env_from_host": [1]}, "provision[0].env_from_host"),
        ({"seconds": True}, "provision[0].seconds"),
        ({"kind": 3}, "provision[0].kind"),
    ],
)
def test_sign_names_a_bad_provisioning_record(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    artifact = make_artifact(tmp_path)
    record = json.loads((artifact / "build.json").read_text())
    record["provision"] = [{**STEP, **change}]
    (artifact / "build.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match=re.escape(f"build.json: {field}: ")):
        sign_artifact(artifact, make_key(tmp_path), now=NOW)
