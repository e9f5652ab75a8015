"""Output formats: a tiny qcow2 made with qemu-img, converted to every format and
each result read back by qemu-img itself (format, virtual size, `check`, and the
guest-visible bytes compared with the qcow2's). The OVF descriptor is parsed
with xml.etree (the DMTF envelope schema is not at hand offline), the OVA read
back with tarfile, and its manifest's digests recomputed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from builder.errors import InputError
from builder.formats import (
    MIB,
    OVF_NS,
    QEMU_FORMAT,
    RASD_NS,
    VMDK_STREAM_OPTIMIZED,
    VMW_NS,
    Compression,
    Hardware,
    OutputFormat,
    compact,
    compact_command,
    file_name,
    make_outputs,
    render_ovf,
)
from builder.spec import load_spec

# Not a whole MiB (qemu-img keeps whole 512-byte sectors): the VHD must round up.
SIZE = 3 * MIB + 512
HARDWARE = Hardware("debian-12-baseline", "1.2.3", cpus=3, memory=1536)
OTHERS = [f for f in OutputFormat if f is not OutputFormat.qcow2]


def qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)


def info(path: Path, fmt: str) -> dict[str, Any]:
    done = qemu_img("info", "--output=json", "-f", fmt, str(path))
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def make_disk(folder: Path) -> Path:
    """A qcow2 whose guest sees data at the start, in the middle and in the last sector."""
    raw = folder / "source.raw"
    with open(raw, "wb") as f:
        f.truncate(SIZE)
        for offset in (0, MIB + 4096, SIZE - 512):
            f.seek(offset)
            f.write(os.urandom(512))
    disk = folder / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", "-c", str(raw), str(disk)],
        check=True,
    )
    raw.unlink()
    return disk


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    folder = tmp_path_factory.mktemp("artifact")
    disk = make_disk(folder)
    outputs = make_outputs(disk, list(OutputFormat), HARDWARE)
    return disk, outputs


def test_every_format_is_made_and_recorded(converted: tuple[Path, list[Any]]) -> None:
    disk, outputs = converted
    assert [o.format for o in outputs] == OTHERS
    for output in outputs:
        path = disk.parent / output.path
        assert output.path == file_name(output.format)
        data = path.read_bytes()
        assert output.sha256 == hashlib.sha256(data).hexdigest()
        assert output.sha512 == hashlib.sha512(data).hexdigest()
        assert output.size == len(data)
        assert output.record() == {
            "format": str(output.format),
            "path": output.path,
            "sha256": output.sha256,
            "sha512": output.sha512,
            "size": output.size,
        }
    # No scratch folder (the VHD's overlay, the OVA's VMDK) is left behind.
    assert sorted(p.name for p in disk.parent.iterdir()) == sorted(
        ["disk.qcow2", *(file_name(f) for f in OTHERS)]
    )


@pytest.mark.parametrize("fmt", [f for f in OTHERS if f is not OutputFormat.ova])
def test_qemu_img_reads_each_format_as_the_same_disk(
    converted: tuple[Path, list[Any]], fmt: OutputFormat
) -> None:
    disk, _ = converted
    path = disk.parent / file_name(fmt)
    found = info(path, QEMU_FORMAT[fmt])
    assert found["format"] == QEMU_FORMAT[fmt]
    assert "backing-filename" not in found
    if fmt is OutputFormat.vhd:
        # Azure: a fixed VHD of a whole MiB, rounded up, never down.
        assert found["virtual-size"] == 4 * MIB
        assert found["virtual-size"] % MIB == 0
        assert path.stat().st_size == 4 * MIB + 512  # the data, then the 512-byte footer
    else:
        assert found["virtual-size"] == SIZE
    if fmt is OutputFormat.vmdk:
        data = found["format-specific"]["data"]
        assert data["create-type"] == "streamOptimized"
        assert [e["filename"] for e in data["extents"]] == [str(path)]
    check = qemu_img("check", "-f", QEMU_FORMAT[fmt], str(path))
    if fmt in (OutputFormat.vmdk, OutputFormat.vhdx):
        assert check.returncode == 0, check.stderr
    else:
        assert check.returncode == 63  # raw and vpc: "does not support checks"
    # What a guest reads is the template's bytes (the VHD's extra tail reads as zeros).
    same = qemu_img("compare", "-f", "qcow2", "-F", QEMU_FORMAT[fmt], str(disk), str(path))
    assert same.returncode == 0, same.stdout + same.stderr


def read_ova(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path, "r:") as tar:
        members = []
        for member in tar.getmembers():
            assert member.isfile()
            extracted = tar.extractfile(member)
            assert extracted is not None
            members.append((member.name, extracted.read()))
    return members


def test_the_ova_holds_descriptor_disk_and_manifest_in_order(
    converted: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    disk, _ = converted
    ova = disk.parent / "disk.ova"
    members = read_ova(ova)
    assert [name for name, _ in members] == [
        "debian-12-baseline.ovf",
        "debian-12-baseline-disk1.vmdk",
        "debian-12-baseline.mf",
    ]
    # POSIX ustar headers ("ustar\0" "00"), one per member, no pax or GNU extensions.
    raw = ova.read_bytes()
    offset = 0
    for _, data in members:
        assert raw[offset + 257 : offset + 265] == b"ustar\x0000"
        offset += 512 + -(-len(data) // 512) * 512
    (ovf_name, descriptor), (vmdk_name, vmdk), (_, mf) = members
    assert mf.decode().splitlines() == [
        f"SHA256({ovf_name})= {hashlib.sha256(descriptor).hexdigest()}",
        f"SHA256({vmdk_name})= {hashlib.sha256(vmdk).hexdigest()}",
    ]
    # The disk inside is the streamOptimized VMDK of the same disk.
    inner = tmp_path / "inner.vmdk"
    inner.write_bytes(vmdk)
    found = info(inner, "vmdk")
    assert found["format-specific"]["data"]["create-type"] == "streamOptimized"
    assert found["virtual-size"] == SIZE
    same = qemu_img("compare", "-f", "qcow2", "-F", "vmdk", str(disk), str(inner))
    assert same.returncode == 0, same.stdout + same.stderr
    check_descriptor(descriptor, vmdk_name, len(vmdk), efi=False)


def ovf(tag: str) -> str:
    return f"{{{OVF_NS}}}{tag}"


def rasd(tag: str) -> str:
    return f"{{{RASD_NS}}}{tag}"


def check_descriptor(data: bytes, disk_file: str, disk_size: int, *, efi: bool) -> None:
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(data)
    assert root.tag == ovf("Envelope")
    assert root.get(ovf("version")) == "1.0"
    # Sections in the order DSP0243 1.0 gives them.
    assert [child.tag for child in root] == [
        ovf("References"),
        ovf("DiskSection"),
        ovf("NetworkSection"),
        ovf("VirtualSystem"),
    ]
    (file,) = root.findall(f"{ovf('References')}/{ovf('File')}")
    assert file.get(ovf("href")) == disk_file
    assert file.get(ovf("size")) == str(disk_size)
    (disk,) = root.findall(f"{ovf('DiskSection')}/{ovf('Disk')}")
    assert disk.get(ovf("fileRef")) == file.get(ovf("id"))
    assert disk.get(ovf("capacity")) == str(SIZE)
    assert disk.get(ovf("capacityAllocationUnits")) == "byte"
    assert disk.get(ovf("format")) == VMDK_STREAM_OPTIMIZED
    system = root.find(ovf("VirtualSystem"))
    assert system is not None
    assert system.get(ovf("id")) == "debian-12-baseline"
    assert system.findtext(f"{ovf('ProductSection')}/{ovf('Version')}") == "1.2.3"
    hardware = system.find(ovf("VirtualHardwareSection"))
    assert hardware is not None
    items = {item.findtext(rasd("ResourceType")): item for item in hardware.findall(ovf("Item"))}
    assert set(items) == {"3", "4", "6", "10", "17"}
    assert items["3"].findtext(rasd("VirtualQuantity")) == "3"
    assert items["4"].findtext(rasd("VirtualQuantity")) == "1536"
    assert items["4"].findtext(rasd("AllocationUnits")) == "byte * 2^20"
    disk_item = items["17"]
    assert disk_item.findtext(rasd("HostResource")) == f"ovf:/disk/{disk.get(ovf('diskId'))}"
    assert disk_item.findtext(rasd("Parent")) == items["6"].findtext(rasd("InstanceID"))
    instance_ids = [item.findtext(rasd("InstanceID")) for item in items.values()]
    assert len(set(instance_ids)) == len(instance_ids)
    for item in items.values():
        names = [child.tag.split("}")[1] for child in item]
        assert names == sorted(names)  # the CIM schema's sequence is alphabetical
    config = {
        c.get(f"{{{VMW_NS}}}key"): c.get(f"{{{VMW_NS}}}value")
        for c in hardware.findall(f"{{{VMW_NS}}}Config")
    }
    assert config["firmware"] == ("efi" if efi else "bios")


def test_the_descriptor_names_uefi_firmware() -> None:
    hardware = Hardware("t", "1", cpus=1, memory=512, efi=True, secure_boot=True)
    data = render_ovf(hardware, disk_file="t-disk1.vmdk", disk_size=1, capacity=SIZE)
    root = ET.fromstring(data)
    config = {
        c.get(f"{{{VMW_NS}}}key"): c.get(f"{{{VMW_NS}}}value")
        for c in root.iter(f"{{{VMW_NS}}}Config")
    }
    assert config == {"firmware": "efi", "uefi.secureBoot.enabled": "true"}


def test_only_the_requested_formats_are_made(tmp_path: Path) -> None:
    disk = make_disk(tmp_path)
    outputs = make_outputs(disk, [OutputFormat.qcow2, OutputFormat.ova], HARDWARE)
    assert [o.format for o in outputs] == [OutputFormat.ova]
    # The OVA's VMDK was a scratch file: no disk.vmdk appears.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.ova", "disk.qcow2"]
    assert make_outputs(disk, [OutputFormat.qcow2], HARDWARE) == []


def write_spec(folder: Path, outputs: str | None) -> Path:
    spec = folder / "spec.yaml"
    lines = [
        "name: t",
        'version: "1"',
        "base: {debootstrap: {suite: bookworm}}",
        "profile: baseline",
    ]
    if outputs is not None:
        lines.append(f"outputs: {outputs}")
    spec.write_text("\n".join(lines) + "\n")
    return spec


def test_the_spec_lists_outputs_in_goldsmith_order_with_qcow2(tmp_path: Path) -> None:
    default = load_spec(write_spec(tmp_path, None))
    assert default.outputs == (OutputFormat.qcow2,)
    spec = load_spec(write_spec(tmp_path, "[ova, raw]"))
    assert spec.outputs == (OutputFormat.qcow2, OutputFormat.raw, OutputFormat.ova)
    # Part of the spec's meaning, so of the build key.
    assert spec.canonical()["outputs"] == ["qcow2", "raw", "ova"]
    assert default.canonical()["outputs"] == ["qcow2"]
    assert load_spec(write_spec(tmp_path, "[qcow2]")).canonical() == default.canonical()


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        (
            "[rwa]",
            "outputs[0]: expected one of qcow2, raw, vmdk, vhd, vhdx, ova, got 'rwa'; "
            "did you mean 'raw'?",
        ),
        ("qcow2", "outputs: expected a non-empty list of formats"),
        ("[]", "outputs: expected a non-empty list of formats"),
        ("[raw, vhd, raw]", "outputs[2]: expected each format once, got 'raw' twice"),
        ("[1]", "outputs[0]: expected one of qcow2, raw, vmdk, vhd, vhdx, ova, got integer 1"),
        ('["vhd\\e"]', r"got 'vhd\x1b'"),
        ("[{raw: 1}]", "outputs[0]: expected one of"),
    ],
)
def test_bad_outputs_are_one_line_naming_the_field(
    tmp_path: Path, outputs: str, expected: str
) -> None:
    with pytest.raises(InputError) as caught:
        load_spec(write_spec(tmp_path, outputs))
    assert expected in caught.value.message
    assert "\n" not in caught.value.message and "\x1b" not in caught.value.message
    assert caught.value.exit_code == 2


# --- compaction ---------------------------------------------------------------


def test_compaction_names_formats_compression_and_parallel_writes(tmp_path: Path) -> None:
    src, dst = tmp_path / "overlay.qcow2", tmp_path / "disk.qcow2"
    assert compact_command(src, dst, Compression.zstd) == [
        *("qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", "-c"),
        *("-o", "compression_type=zstd", "-m", "8", "-W"),
        *(str(src), str(dst)),
    ]
    argv = compact_command(Path("nbd:evil"), Path("out,x"), Compression.zlib)
    assert argv[argv.index("-o") + 1] == "compression_type=zlib"
    # Relative names become absolute: qemu-img reads no protocol prefix in them.
    assert argv[-2:] == [os.path.abspath("nbd:evil"), os.path.abspath("out,x")]


@pytest.mark.parametrize("compression", list(Compression))
def test_compaction_writes_the_compression_asked_and_the_same_content(
    tmp_path: Path, compression: Compression
) -> None:
    disk = make_disk(tmp_path)
    out = tmp_path / f"{compression}.qcow2"
    compact(disk, out, compression)
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", "-f", "qcow2", str(out)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert info["format-specific"]["data"]["compression-type"] == str(compression)
    assert "backing-filename" not in info
    same = subprocess.run(
        ["qemu-img", "compare", "-q", "-f", "qcow2", "-F", "qcow2", str(disk), str(out)],
        check=False,
    )
    assert same.returncode == 0


def write_compression_spec(folder: Path, value: str | None) -> Path:
    spec = write_spec(folder, None)
    if value is not None:
        spec.write_text(spec.read_text() + f"compression: {value}\n")
    return spec


def test_the_spec_compresses_with_zstd_unless_it_asks_for_zlib(tmp_path: Path) -> None:
    default = load_spec(write_compression_spec(tmp_path, None))
    assert default.compression is Compression.zstd
    zlib = load_spec(write_compression_spec(tmp_path, "zlib"))
    assert zlib.compression is Compression.zlib
    # Part of the spec's meaning: other compression, other bytes, another build key.
    assert default.canonical()["compression"] == "zstd"
    assert zlib.canonical()["compression"] == "zlib"
    assert load_spec(write_compression_spec(tmp_path, "zstd")).canonical() == default.canonical()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("zstf", "compression: expected one of zstd, zlib, got 'zstf'; did you mean 'zstd'?"),
        ("gzip", "compression: expected one of zstd, zlib, got 'gzip'"),
        ("1", "compression: expected one of zstd, zlib, got integer 1"),
        ("[zstd]", "compression: expected one of zstd, zlib, got "),
        ('"zstd\\e"', r"got 'zstd\x1b'"),
        ('"zstd; rm -rf /"', "got 'zstd; rm -rf /'"),
    ],
)
def test_a_bad_compression_is_one_line_naming_file_and_field(
    tmp_path: Path, value: str, expected: str
) -> None:
    spec = write_compression_spec(tmp_path, value)
    with pytest.raises(InputError) as caught:
        load_spec(spec)
    message = caught.value.message
    assert expected in message and str(spec) in message
    assert "\n" not in message and "\x1b" not in message
    assert caught.value.exit_code == 2
