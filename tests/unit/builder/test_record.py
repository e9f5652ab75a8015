"""build.json's one model and reader (builder/record.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from builder.errors import InputError
from builder.firmware import Firmware
from builder.formats import OutputFormat
from builder.record import (
    BUILD_RECORD_NAME,
    BUILD_SCHEMA,
    Artifact,
    read_build_record,
    read_build_record_bytes,
)

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "data" / "golden" / "debian-12-baseline-1.0.0"


def golden() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((GOLDEN / "build.json").read_bytes())
    return document


def write(folder: Path, document: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / BUILD_RECORD_NAME
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def test_the_golden_record_is_read_and_written_back_byte_for_byte(tmp_path: Path) -> None:
    record = Artifact(GOLDEN).read_build_record()
    assert (record.template_name, record.template_version) == ("debian-12-baseline", "1.0.0")
    assert record.firmware is Firmware.bios and record.tpm is False
    assert record.build_vm.instance_id is not None
    assert record.base[0].inputs is not None and record.base[0].inputs["suite"] == "bookworm"
    assert record.outputs == ()  # the qcow2 is the image, not another output
    assert record.build_key is not None and record.build_key.startswith("sha256:")
    record.write(tmp_path / "build.json")
    assert (tmp_path / "build.json").read_bytes() == (GOLDEN / "build.json").read_bytes()


def test_optional_keys_stay_optional(tmp_path: Path) -> None:
    """A record from before outputs, firmware, provisioning and build keys reads,
    and is written back without them."""
    document = golden()
    for key in ("outputs", "steps", "firmware", "provision", "sealed", "build_key"):
        del document[key]
    for key in ("host_key", "instance_id", "builder_key"):
        del document["build_vm"][key]
    del document["image"]["size"]
    path = write(tmp_path / "old", document)
    data, record = read_build_record_bytes(path)
    assert (record.firmware, record.tpm, record.provision) == (Firmware.bios, False, ())
    assert record.build_key is None and record.build_vm.builder_key is None
    record.write(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == data


@pytest.mark.parametrize(
    ("firmware", "platform"),
    [
        ({"type": "uefi-secureboot", "tpm": True}, (Firmware.uefi_secureboot, True)),
        ({"type": "uefi"}, (Firmware.uefi, False)),
        ({"type": "bios", "tpm": True}, (Firmware.bios, True)),
    ],
)
def test_the_record_names_the_platform_validation_boots(
    tmp_path: Path, firmware: dict[str, Any], platform: tuple[Firmware, bool]
) -> None:
    document = golden()
    document["firmware"] = firmware
    record = read_build_record(write(tmp_path / "fw", document))
    assert (record.firmware, record.tpm) == platform


def test_an_apt_proxy_and_other_outputs_are_kept(tmp_path: Path) -> None:
    document = golden()
    document["outputs"].append({**document["outputs"][0], "format": "raw", "path": "disk.raw"})
    document["apt_proxy"] = {"env_from_host": "PROXY", "direct": []}
    path = write(tmp_path / "a", document)
    record = read_build_record(path)
    assert [o.format for o in record.outputs] == [OutputFormat.raw]
    assert record.apt_proxy == {"env_from_host": "PROXY", "direct": []}
    assert record.to_dict() == document


@pytest.mark.parametrize("compression", ["zstd", "zlib"])
def test_the_compression_is_kept(tmp_path: Path, compression: str) -> None:
    document = golden()
    document["image"]["compression"] = compression
    record = read_build_record(write(tmp_path / compression, document))
    assert record.image_compression == compression
    assert record.to_dict() == document


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(schema="https://goldsmith.dev/build/v2"), "schema"),
        (lambda d: d["template"].pop("version"), "template.version"),
        (lambda d: d["image"].update(virtual_size="1"), "image.virtual_size"),
        (lambda d: d["base"].update(digest={"sha512": "0"}), "base.digest"),
        (lambda d: d.update(base=[d["base"], {"name": 1}]), "base[1].name"),
        (lambda d: d["tools"].pop("qemu"), "tools.qemu"),
        (lambda d: d.pop("build_vm"), "build_vm"),
        (lambda d: d["build_vm"].update(host_keys=["x"]), "build_vm.host_keys"),
        (lambda d: d.update(firmware="uefi"), "firmware"),
        (lambda d: d.update(firmware={"type": "efi"}), "firmware.type"),
        (lambda d: d.update(firmware={"type": 1}), "firmware.type"),
        (lambda d: d.update(firmware={}), "firmware.type"),
        (lambda d: d.update(firmware={"type": "uefi", "tpm": "yes"}), "firmware.tpm"),
        (lambda d: d.update(outputs=[{"format": "raw", "path": "/etc/shadow"}]), "outputs[0].path"),
        (lambda d: d.update(provision=[{"index": 0}]), "provision[0].inputs"),
        (lambda d: d.update(steps=[{"name": "boot", "seconds": "1", "status": "ok"}]), "steps[0]"),
        (lambda d: d.update(build_key=7), "build_key"),
        (lambda d: d["image"].update(compression="lz4"), "image.compression"),
        (lambda d: d["image"].update(compression=["zstd"]), "image.compression"),
    ],
)
def test_a_bad_field_is_one_line_naming_file_and_field(
    tmp_path: Path, change: Any, field: str
) -> None:
    document = golden()
    change(document)
    path = write(tmp_path / "bad", document)
    with pytest.raises(InputError) as info:
        read_build_record(path)
    assert info.value.exit_code == 2
    assert info.value.field is not None and info.value.field.startswith(field)
    assert str(path) in info.value.message and "\n" not in info.value.message


@pytest.mark.parametrize("content", ["", "{", "[]", '{"schema": 1}'])
def test_what_is_no_record_is_bad_input(tmp_path: Path, content: str) -> None:
    path = tmp_path / BUILD_RECORD_NAME
    path.write_text(content)
    with pytest.raises(InputError, match=r"build\.json"):
        read_build_record(path)
    with pytest.raises(InputError, match="not found"):
        read_build_record(tmp_path / "absent" / BUILD_RECORD_NAME)


def test_the_artifact_names_its_files(tmp_path: Path) -> None:
    artifact = Artifact(tmp_path)
    assert artifact.image == tmp_path / "disk.qcow2"
    assert artifact.build_record == tmp_path / "build.json"
    assert artifact.validation_record == tmp_path / "validation.json"
    assert artifact.manifest == tmp_path / "manifest.dsse.json"
    assert artifact.ssh_signature == tmp_path / "manifest.dsse.json.sig"
    assert artifact.output(OutputFormat.vmdk) == tmp_path / "disk.vmdk"


def test_the_recorded_build_key_is_read_leniently(tmp_path: Path) -> None:
    """Only the key: a foreign or broken record has none, and the build runs again."""
    artifact = Artifact(tmp_path)
    assert artifact.recorded_build_key() is None
    write(tmp_path, {"schema": "x", "build_key": "sha256:" + "ab" * 32})
    assert artifact.recorded_build_key() == "sha256:" + "ab" * 32
    write(tmp_path, {"build_key": "md5:0"})
    assert artifact.recorded_build_key() is None


def test_a_record_made_in_code_reads_back(tmp_path: Path) -> None:
    record = read_build_record(GOLDEN / "build.json")
    changed = dataclasses.replace(record, template_version="1.0.1", build_key=None)
    changed.write(tmp_path / "build.json")
    assert read_build_record(tmp_path / "build.json") == changed
    assert json.loads((tmp_path / "build.json").read_text())["schema"] == BUILD_SCHEMA
