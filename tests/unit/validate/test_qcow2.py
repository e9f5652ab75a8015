"""The qcow2 header parser and the image hashing, against images from qemu-img."""

from __future__ import annotations

import hashlib
import struct
import subprocess
from pathlib import Path

import pytest

from builder.errors import InputError
from validate.qcow2 import (
    ImageError,
    hash_image,
    read_header,
    require_self_contained,
)


def qcow2(tmp_path: Path, name: str, *options: str, size: str = "1M") -> Path:
    path = tmp_path / name
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", *options, name, size],
        check=True,
        cwd=tmp_path,
    )
    return path


def test_plain_v3_image(tmp_path: Path) -> None:
    header = require_self_contained(qcow2(tmp_path, "a.qcow2", size="3M"))
    assert header.version == 3
    assert header.virtual_size == 3 << 20
    assert header.cluster_bits == 16
    assert header.backing_file is None and not header.external_data_file
    assert header.external_references() == []


def test_v2_image(tmp_path: Path) -> None:
    header = require_self_contained(qcow2(tmp_path, "a.qcow2", "-o", "compat=0.10"))
    assert header.version == 2
    assert header.virtual_size == 1 << 20


def test_backing_file_is_named(tmp_path: Path) -> None:
    qcow2(tmp_path, "base.qcow2")
    image = qcow2(tmp_path, "top.qcow2", "-b", "base.qcow2", "-F", "qcow2")
    header = read_header(image)
    assert header.backing_file == "base.qcow2"
    assert header.backing_format == "qcow2"
    with pytest.raises(ImageError, match=r"names a backing file \('base.qcow2'\)") as caught:
        require_self_contained(image)
    assert caught.value.exit_code == 1
    assert caught.value.hint is not None and "qemu-img convert" in caught.value.hint


def test_backing_file_in_a_v2_image(tmp_path: Path) -> None:
    qcow2(tmp_path, "base.qcow2")
    image = qcow2(tmp_path, "top.qcow2", "-o", "compat=0.10", "-b", "base.qcow2", "-F", "qcow2")
    assert read_header(image).backing_file == "base.qcow2"


def test_external_data_file_is_named(tmp_path: Path) -> None:
    image = qcow2(tmp_path, "d.qcow2", "-o", "data_file=d.raw,data_file_raw=on")
    header = read_header(image)
    assert header.external_data_file and header.data_file_raw
    assert header.data_file_name == "d.raw"
    with pytest.raises(ImageError, match=r"names an external data file \('d.raw'\)"):
        require_self_contained(image)


def test_data_file_feature_bit_alone_is_refused(tmp_path: Path) -> None:
    # The incompatible-feature bit without its name extension: still not self-contained.
    image = qcow2(tmp_path, "a.qcow2")
    with open(image, "r+b") as f:
        f.seek(72)
        f.write(struct.pack(">Q", 1 << 2))
    with pytest.raises(ImageError, match=r"names an external data file"):
        require_self_contained(image)


def test_both_references_are_reported(tmp_path: Path) -> None:
    qcow2(tmp_path, "base.qcow2")
    image = qcow2(tmp_path, "x.qcow2", "-b", "base.qcow2", "-F", "qcow2", "-o", "data_file=x.raw")
    assert len(read_header(image).external_references()) == 2


def test_not_a_qcow2(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * 4096)
    with pytest.raises(ImageError, match=r"not a qcow2 image"):
        read_header(raw)


@pytest.mark.parametrize("length", [3, 40, 90])
def test_truncated_header(tmp_path: Path, length: int) -> None:
    image = qcow2(tmp_path, "a.qcow2")
    image.write_bytes(image.read_bytes()[:length])
    with pytest.raises(ImageError, match=r"truncated|not a qcow2|extensions run past"):
        read_header(image)


def test_unknown_version(tmp_path: Path) -> None:
    image = qcow2(tmp_path, "a.qcow2")
    with open(image, "r+b") as f:
        f.seek(4)
        f.write(struct.pack(">I", 4))
    with pytest.raises(ImageError, match=r"qcow2 version 4"):
        read_header(image)


def test_header_extension_running_off_the_cluster(tmp_path: Path) -> None:
    image = qcow2(tmp_path, "a.qcow2")
    with open(image, "r+b") as f:
        f.seek(112)  # header_length of a qemu 7 image: the first extension starts here
        f.write(struct.pack(">II", 0x12345678, 1 << 20))
    with pytest.raises(ImageError, match=r"extension 0x12345678 is truncated"):
        read_header(image)


def test_missing_image(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope.qcow2: image not found"):
        read_header(tmp_path / "nope.qcow2")
    with pytest.raises(InputError, match=r"nope.qcow2: image not found"):
        hash_image(tmp_path / "nope.qcow2")


def test_hash_image_of_a_qcow2(tmp_path: Path) -> None:
    image = qcow2(tmp_path, "a.qcow2")
    data = image.read_bytes()
    assert hash_image(image) == (
        hashlib.sha256(data).hexdigest(),
        hashlib.sha512(data).hexdigest(),
    )
