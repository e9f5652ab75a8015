"""The qcow2 header parser and the image hashing, against images from qemu-img."""

from __future__ import annotations

import hashlib
import os
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
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2", *options, name, size]
    # LUKS creation times its key derivation with CPU-time samples and gives up
    # ("Unable to get accurate CPU usage") on a busy host; another try does it.
    for _ in range(4):
        if subprocess.run(cmd, cwd=tmp_path, check=False).returncode == 0:
            return path
        path.unlink(missing_ok=True)
    subprocess.run(cmd, check=True, cwd=tmp_path)
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


# --- contents that are not the one disk validation saw --------------------------------


def luks_qcow2(tmp_path: Path, name: str = "enc.qcow2") -> Path:
    secret = "id=sec0,data=correct-horse"
    return qcow2(
        tmp_path,
        name,
        "--object",
        f"secret,{secret}",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=50",
    )


def test_internal_snapshots_are_counted_and_refused(tmp_path: Path) -> None:
    image = qcow2(tmp_path, "s.qcow2")
    for name in ("before-hardening", "debug"):
        subprocess.run(["qemu-img", "snapshot", "-c", name, str(image)], check=True)
    assert read_header(image).snapshots == 2
    with pytest.raises(ImageError, match=r"holds 2 internal snapshot\(s\)") as caught:
        require_self_contained(image)
    assert caught.value.exit_code == 1


def test_a_deleted_snapshot_leaves_a_plain_image(tmp_path: Path) -> None:
    image = qcow2(tmp_path, "s.qcow2")
    subprocess.run(["qemu-img", "snapshot", "-c", "x", str(image)], check=True)
    subprocess.run(["qemu-img", "snapshot", "-d", "x", str(image)], check=True)
    assert require_self_contained(image).snapshots == 0


def test_luks_encryption_is_refused(tmp_path: Path) -> None:
    header = read_header(luks_qcow2(tmp_path))
    assert header.crypt_method == 2 and header.crypto_header
    with pytest.raises(ImageError, match=r"is encrypted \(LUKS\)"):
        require_self_contained(tmp_path / "enc.qcow2")


def test_legacy_aes_encryption_is_refused(tmp_path: Path) -> None:
    # qemu-img no longer creates these; the header field alone must be enough.
    image = qcow2(tmp_path, "a.qcow2")
    with open(image, "r+b") as f:
        f.seek(32)
        f.write(struct.pack(">I", 1))
    with pytest.raises(ImageError, match=r"is encrypted \(AES\)"):
        require_self_contained(image)


@pytest.mark.parametrize(
    ("bits", "message"),
    [
        (1 << 0, r"marked dirty"),
        (1 << 1, r"marked corrupt"),
        (1 << 7, r"unknown incompatible features \(0x80\)"),
    ],
)
def test_incompatible_feature_bits(tmp_path: Path, bits: int, message: str) -> None:
    image = qcow2(tmp_path, "a.qcow2")
    with open(image, "r+b") as f:
        f.seek(72)
        f.write(struct.pack(">Q", bits))
    with pytest.raises(ImageError, match=message):
        require_self_contained(image)


def test_zstd_compression_is_still_self_contained(tmp_path: Path) -> None:
    image = qcow2(tmp_path, "z.qcow2", "-o", "compression_type=zstd")
    assert read_header(image).incompatible_features & (1 << 3)
    require_self_contained(image)


def test_every_refusal_is_named(tmp_path: Path) -> None:
    qcow2(tmp_path, "base.qcow2")
    image = qcow2(tmp_path, "x.qcow2", "-b", "base.qcow2", "-F", "qcow2")
    subprocess.run(["qemu-img", "snapshot", "-c", "s", str(image)], check=True)
    with pytest.raises(ImageError, match=r"backing file.*; holds 1 internal snapshot"):
        require_self_contained(image)


def test_a_fifo_or_device_as_the_image_fails_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "disk.qcow2"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"not a regular file"):
        read_header(fifo)
    with pytest.raises(InputError, match=r"not a regular file"):
        read_header(Path("/dev/zero"))
