"""Other output formats in the signed statement and at the deploy gate: a signed
artifact holding every format (made with qemu-img from a tiny qcow2), verified
by format, all together, and refused when any one of them was altered."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_manifest import NOW, make_artifact, make_key, read_statement, sha

from builder.cli import cli
from builder.formats import Hardware, OutputFormat, file_name, make_outputs
from validate.claims import VerificationError
from validate.keys import load_private_key
from validate.manifest import (
    BuildRecord,
    SigningError,
    build_statement,
    sign_artifact,
    write_manifest,
)
from validate.results import ValidationRun
from validate.verify import verify_artifact

LATER = NOW + datetime.timedelta(days=1)
OTHERS = [f for f in OutputFormat if f is not OutputFormat.qcow2]
VMDK_FLAT = ["qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat"]
VHD_FIXED = ["qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=fixed,force_size=on"]


def add_outputs(artifact: Path, formats: list[OutputFormat]) -> None:
    """Convert the artifact's qcow2 and list the outputs in build.json, as a build does."""
    outputs = make_outputs(artifact / "disk.qcow2", formats, Hardware("t", "1", cpus=1, memory=512))
    record_outputs(artifact, [o.record() for o in outputs])


def record_outputs(artifact: Path, outputs: list[dict[str, Any]]) -> None:
    build = json.loads((artifact / "build.json").read_text())
    sha256, sha512 = sha(artifact / "disk.qcow2")
    qcow2 = {"format": "qcow2", "path": "disk.qcow2", "sha256": sha256, "sha512": sha512}
    build["outputs"] = [{**qcow2, "size": (artifact / "disk.qcow2").stat().st_size}, *outputs]
    (artifact / "build.json").write_text(json.dumps(build, indent=2))


def output_record(artifact: Path, fmt: OutputFormat) -> dict[str, Any]:
    path = artifact / file_name(fmt)
    sha256, sha512 = sha(path)
    return {
        "format": str(fmt),
        "path": path.name,
        "sha256": sha256,
        "sha512": sha512,
        "size": path.stat().st_size,
    }


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("signed")
    artifact = make_artifact(root)
    add_outputs(artifact, list(OutputFormat))
    key = make_key(root)
    sign_artifact(artifact, key, now=NOW)
    return artifact, key.with_name(key.name + ".pub")


def copy_of(signed: tuple[Path, Path], tmp_path: Path) -> Path:
    artifact = tmp_path / signed[0].name
    subprocess.run(["cp", "-a", str(signed[0]), str(artifact)], check=True)
    return artifact


def test_each_output_is_a_subject_with_its_own_digests(signed: tuple[Path, Path]) -> None:
    artifact, _ = signed
    subjects = read_statement(artifact / "manifest.dsse.json")["subject"]
    assert [s["name"] for s in subjects] == [
        f"debian-12-baseline-1.0.0.{fmt}" for fmt in OutputFormat
    ]
    for subject, fmt in zip(subjects, OutputFormat, strict=True):
        sha256, sha512 = sha(artifact / file_name(fmt))
        assert subject["digest"] == {"sha256": sha256, "sha512": sha512}


def test_verify_checks_the_qcow2_by_default_one_format_or_all(signed: tuple[Path, Path]) -> None:
    artifact, pub = signed
    assert verify_artifact(artifact, keys=[pub], now=LATER).formats == ("qcow2",)
    for fmt in OTHERS:
        verdict = verify_artifact(artifact, keys=[pub], now=LATER, formats=[str(fmt)])
        assert verdict.formats == (str(fmt),)
        assert verdict.image == artifact / file_name(fmt)
    verdict = verify_artifact(artifact, keys=[pub], now=LATER, all_formats=True)
    assert verdict.formats == tuple(str(f) for f in OutputFormat)
    assert "formats:   qcow2, raw, vmdk, vhd, vhdx, ova" in verdict.describe()
    # One image given with its format, the manifest beside it.
    verdict = verify_artifact(
        image=artifact / "disk.vhd",
        manifest=artifact / "manifest.dsse.json",
        keys=[pub],
        now=LATER,
        formats=["vhd"],
    )
    assert verdict.formats == ("vhd",)


@pytest.mark.parametrize("fmt", OTHERS)
def test_an_altered_output_is_refused_by_its_own_check(
    signed: tuple[Path, Path], tmp_path: Path, fmt: OutputFormat
) -> None:
    artifact = copy_of(signed, tmp_path)
    pub = signed[1]
    path = artifact / file_name(fmt)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    verify_artifact(artifact, keys=[pub], now=LATER)  # the qcow2 is still the signed one
    for kwargs in ({"formats": [str(fmt)]}, {"all_formats": True}):
        with pytest.raises(VerificationError, match="does not match the manifest subject"):
            verify_artifact(artifact, keys=[pub], now=LATER, **kwargs)


def test_a_missing_output_fails_all_and_an_unsigned_format_fails_format(
    tmp_path: Path, signed: tuple[Path, Path]
) -> None:
    artifact = copy_of(signed, tmp_path)
    (artifact / "disk.vhdx").unlink()
    with pytest.raises(VerificationError, match="signs a vhdx output, but it is missing"):
        verify_artifact(artifact, keys=[signed[1]], now=LATER, all_formats=True)

    plain = tmp_path / "plain"
    plain.mkdir()
    only_qcow2 = make_artifact(plain)
    key = make_key(tmp_path, name="other")
    sign_artifact(only_qcow2, key, now=NOW)
    (only_qcow2 / "disk.raw").write_bytes(b"\0" * 1048576)
    with pytest.raises(VerificationError, match="signs no raw output"):
        verify_artifact(
            only_qcow2, keys=[key.with_name(key.name + ".pub")], now=LATER, formats=["raw"]
        )


def test_sign_refuses_an_output_that_is_not_the_one_built(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    add_outputs(artifact, [OutputFormat.raw, OutputFormat.vhd])
    (artifact / "disk.vhd").write_bytes(b"\0" * 512)
    key = make_key(tmp_path)
    with pytest.raises(SigningError, match=r"disk\.vhd has sha256 .* build\.json"):
        sign_artifact(artifact, key, now=NOW)
    (artifact / "disk.vhd").unlink()
    with pytest.raises(SigningError, match=r"disk\.vhd is missing"):
        sign_artifact(artifact, key, now=NOW)
    assert not (artifact / "manifest.dsse.json").exists()


def stamp(artifact: Path, key: Path) -> None:
    """Sign whatever build.json lists, without sign's refusals (a careless signer)."""
    build = BuildRecord.from_dict(
        json.loads((artifact / "build.json").read_text()), artifact / "build.json"
    )
    sha256, sha512 = sha(artifact / "disk.qcow2")
    private = load_private_key(key, lambda _: None)
    statement = build_statement(
        build,
        ValidationRun.load(artifact / "validation.json"),
        build_record_sha256="55" * 32,
        validation_record_sha256="66" * 32,
        image_sha256=sha256,
        image_sha512=sha512,
        virtual_size=1048576,
        keyid=private.keyid,
        approved_at=NOW,
        valid_until=NOW + datetime.timedelta(days=30),
    )
    write_manifest(artifact, statement, private)


def test_a_signed_vmdk_with_extents_elsewhere_is_refused(tmp_path: Path) -> None:
    """Its digest covers a descriptor, not the data a guest would read."""
    artifact = make_artifact(tmp_path)
    subprocess.run(
        [*VMDK_FLAT, str(artifact / "disk.vmdk"), "1M"],
        check=True,
    )
    record_outputs(artifact, [output_record(artifact, OutputFormat.vmdk)])
    key = make_key(tmp_path)
    stamp(artifact, key)
    with pytest.raises(VerificationError, match=r"monolithicFlat VMDK \(extents elsewhere\)"):
        verify_artifact(
            artifact, keys=[key.with_name(key.name + ".pub")], now=LATER, formats=["vmdk"]
        )


def test_a_signed_vhd_of_another_size_is_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    subprocess.run(
        [*VHD_FIXED, str(artifact / "disk.vhd"), "2M"],
        check=True,
    )
    record_outputs(artifact, [output_record(artifact, OutputFormat.vhd)])
    key = make_key(tmp_path)
    stamp(artifact, key)
    with pytest.raises(VerificationError, match="has virtual size 2097152, the manifest 1048576"):
        verify_artifact(
            artifact, keys=[key.with_name(key.name + ".pub")], now=LATER, formats=["vhd"]
        )


def test_the_command_line_takes_format_and_all(signed: tuple[Path, Path]) -> None:
    artifact, pub = signed
    runner = CliRunner()
    done = runner.invoke(cli, ["verify", str(artifact), "--key", str(pub), "--all"])
    assert done.exit_code == 0, done.output
    assert "TRUSTED" in done.output and "formats:   qcow2, raw" in done.output
    done = runner.invoke(
        cli, ["verify", str(artifact), "--key", str(pub), "--format", "ova", "--json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["formats"] == ["ova"]
    done = runner.invoke(cli, ["verify", str(artifact), "--key", str(pub), "--format", "iso"])
    assert done.exit_code == 2
