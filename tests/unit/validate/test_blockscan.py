"""The block scan on small synthetic disks made with qemu-img, mkfs.ext4 -d, sfdisk
and debugfs (no root, no mounts): needles, free blocks, and the image readers."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest
import zstandard

from hardening.results import Status
from validate import blockscan, diskimage
from validate.blockscan import (
    FREE_ZERO_ID,
    NEEDLES_ID,
    BlockScan,
    FreeSpace,
    Hit,
    check_disk_blocks,
    evaluate_block_scan,
    free_blocks_with_bytes,
    scan_image,
)
from validate.diskimage import (
    DiskImageError,
    Qcow2Image,
    check_with_qemu,
    find_partitions,
    inflate_zstd,
    open_image,
)
from validate.extfs import read_ext_fs, structure_only
from validate.needles import (
    Needle,
    encoded_needles,
    host_secret_needles,
    needles_from_build,
    secret_needles,
)

MiB = 1 << 20
SECRET = b"correct horse battery staple 8d1f0c7e"
BUILDER = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExQOQhdjmj44wO7NSUHQhXp2BhWlI44WVgT0aljHDd6 "
    "goldsmith-build-aba918df242e"
)
HOST = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPh9Ezjf7nb1x0Ff8Dm3sTj0lb6lB5D2bZ6c7oL0q9aS "
    "goldsmith-host-aba918df242e"
)
BUILD_VM = {
    "machine_id": "87a0e1b14be949b1ae333ba3b3a4834f",
    "host_keys": {"ed25519": "SHA256:vdhboKXafD2qTyDbw86vQTbNEAXYjvRcI/zpoiXCuBE"},
    "builder_key": BUILDER,
    "host_key": HOST,
    "instance_id": "goldsmith-aba918df242e",
}
RECORD = {"build_vm": BUILD_VM, "provision": []}


def sh(*cmd: str | Path, cwd: Path | None = None) -> str:
    return subprocess.run(
        [str(c) for c in cmd], check=True, capture_output=True, text=True, cwd=cwd
    ).stdout


def write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def blank(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def ext4(
    tmp_path: Path, name: str, files: dict[str, bytes], *, size_mb: int = 64, opts: str = ""
) -> Path:
    """A whole-disk ext4 file system holding ``files`` (mkfs.ext4 -d, no root)."""
    tree = tmp_path / f"{name}.d"
    tree.mkdir()
    for rel, data in files.items():
        (tree / rel).write_bytes(data)
    image = blank(tmp_path / name, size_mb * MiB)
    sh("mkfs.ext4", "-q", "-F", *opts.split(), "-d", tree, image)
    return image


def qcow2(raw: Path, *, compress: bool = False, compression: str = "zlib") -> Path:
    out = raw.with_suffix(f".{compression}.qcow2" if compress else ".qcow2")
    options = ["-c", "-o", f"compression_type={compression}"] if compress else []
    sh("qemu-img", "convert", *options, "-O", "qcow2", raw, out)
    return out


def free_file(image: Path, name: str, *, offset: int = 0) -> None:
    """Delete a file the way a file system does: blocks freed, their bytes left."""
    target = f"{image}?offset={offset}" if offset else str(image)
    sh("debugfs", "-w", "-R", f"rm /{name}", target)


def dumpe2fs_free(image: Path) -> tuple[int, set[int]]:
    out = sh("dumpe2fs", image)
    total = int(re.search(r"^Free blocks:\s+(\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    blocks: set[int] = set()
    for ranges in re.findall(r"^\s+Free blocks: (.*)$", out, re.M):
        for part in filter(None, (p.strip() for p in ranges.split(","))):
            first, _, last = part.partition("-")
            blocks.update(range(int(first), int(last or first) + 1))
    return total, blocks


# --- needles -------------------------------------------------------------------


def test_a_needle_spanning_a_chunk_boundary_is_found_once(tmp_path: Path) -> None:
    disk = blank(tmp_path / "disk.raw", 4 * MiB)
    needle = Needle("test", "text", b"goldsmith-needle-spanning-a-seam")
    write_at(disk, MiB - 10, needle.value)  # 10 bytes in one chunk, the rest in the next
    write_at(disk, 3 * MiB + 100, needle.value)
    for image in (disk, qcow2(disk), qcow2(disk, compress=True)):
        scan = scan_image(image, [needle], chunk=MiB)
        assert [h.offset for h in scan.hits] == [MiB - 10, 3 * MiB + 100], image
        assert scan.hit_count == 2


def test_needles_at_both_ends_of_the_disk_and_of_every_piece(tmp_path: Path) -> None:
    disk = blank(tmp_path / "disk.raw", 2 * MiB)
    needle = Needle("test", "text", b"0123456789abcdef")
    ends = [0, MiB - 16, MiB, 2 * MiB - 16]
    for at in ends:
        write_at(disk, at, needle.value)
    scan = scan_image(qcow2(disk), [needle], chunk=MiB)
    assert [h.offset for h in scan.hits] == ends


def test_a_needle_in_a_freed_block_is_found_and_the_block_counted(tmp_path: Path) -> None:
    secret = b"ssh-ed25519 AAAA goldsmith-build-0123456789ab\n" * 100  # > one 4 KiB block
    files = {"authorized_keys": secret, "keep": b"live data\n"}
    image = ext4(tmp_path, "fs.raw", files, opts="-b 4096")
    needle = Needle("builder key", "comment", b"goldsmith-build-0123456789ab")
    before = scan_image(image, [needle])
    assert before.hit_count == 100 and all("(in use)" in h.where for h in before.hits)
    assert before.filesystems[0].data_blocks == 0

    free_file(image, "authorized_keys")
    for disk in (image, qcow2(image, compress=True)):
        scan = scan_image(disk, [needle])
        assert scan.hit_count == 100
        assert all(h.where.startswith("whole disk block ") for h in scan.hits)
        assert all(h.where.endswith("(free)") for h in scan.hits)
        (fs,) = scan.filesystems
        assert fs.data_blocks == 2  # 4700 bytes: two 4 KiB blocks
        results = {r.id: r for r in evaluate_block_scan(scan)}
        assert results[NEEDLES_ID].status is Status.failed
        assert "builder key (comment) at 0x" in results[NEEDLES_ID].observed
        assert "; 92 more" in results[NEEDLES_ID].observed
        assert results[FREE_ZERO_ID].status is Status.failed
        assert (
            "2 of " in results[FREE_ZERO_ID].observed
            and "hold data" in results[FREE_ZERO_ID].observed
        )


@pytest.mark.parametrize(
    "opts",
    [
        "",  # mke2fs's choice for a small file system: 1 KiB blocks
        "-b 4096",
        "-b 1024 -O ^flex_bg",
        "-b 4096 -O meta_bg,^resize_inode",
        "-b 4096 -O ^64bit -N 2048",
        "-b 2048 -O sparse_super2",
    ],
)
def test_free_blocks_match_dumpe2fs(tmp_path: Path, opts: str) -> None:
    files = {f"f{i}": os.urandom(3000 + 7919 * i) for i in range(40)}
    image = ext4(tmp_path, "fs.raw", files, size_mb=160, opts=opts)
    free_file(image, "f7")
    free_file(image, "f30")
    total, blocks = dumpe2fs_free(image)
    with open_image(image) as disk:
        fs = read_ext_fs(disk, "whole disk", 0)
    assert fs is not None
    assert fs.free_blocks == total
    assert {b for first, end in fs.free_runs for b in range(first, end)} == blocks
    scan = scan_image(image, [Needle("x", "text", b"not anywhere on this disk")])
    (space,) = scan.filesystems
    assert space.free_blocks == total
    assert space.data_blocks > 0  # the two deleted files' blocks
    assert scan.hit_count == 0


def test_zero_free_blocks_are_counted_right(tmp_path: Path) -> None:
    image = ext4(tmp_path, "fs.raw", {"a": b"x" * 10000, "b": os.urandom(50000)}, opts="-b 4096")
    total, _ = dumpe2fs_free(image)
    for disk in (image, qcow2(image), qcow2(image, compress=True)):
        scan = scan_image(disk, [Needle("x", "text", b"not anywhere on this disk")])
        assert [(fs.free_blocks, fs.data_blocks) for fs in scan.filesystems] == [(total, 0)]
        results = {r.id: r for r in evaluate_block_scan(scan)}
        assert results[NEEDLES_ID].status is Status.passed
        assert results[FREE_ZERO_ID].status is Status.passed
        assert (
            results[FREE_ZERO_ID].observed
            == f"whole disk: 0 of {total} free 4 KiB blocks hold data"
        )


def test_a_free_block_made_dirty_by_hand_is_counted(tmp_path: Path) -> None:
    image = ext4(tmp_path, "fs.raw", {"a": b"x"}, opts="-b 4096")
    with open_image(image) as disk:
        fs = read_ext_fs(disk, "whole disk", 0)
    assert fs is not None
    first, end = fs.free_runs[-1]
    write_at(image, (end - 1) * 4096 + 4095, b"\1")  # the last byte of the last free block
    write_at(image, first * 4096, b"\1")
    (space,) = scan_image(image, [Needle("x", "text", b"not anywhere on this disk")]).filesystems
    assert space.data_blocks == 2 and space.examples == (first, end - 1)


def test_partitioned_disks_mbr_and_gpt(tmp_path: Path) -> None:
    fs = ext4(tmp_path, "fs.raw", {"k": b"goldsmith-0123456789ab\n" * 300}, size_mb=16)
    free_file(fs, "k")
    for label in ("dos", "gpt"):
        disk = blank(tmp_path / f"{label}.raw", 24 * MiB)
        layout = f"label: {label}\nstart=2048, size=32768, type=L\nstart=40960, type=S\n"
        subprocess.run(["sfdisk", "-q", disk], input=layout, text=True, check=True)
        sh("dd", f"if={fs}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none")
        scan = scan_image(
            qcow2(disk), [Needle("seed instance id", "text", b"goldsmith-0123456789ab")]
        )
        assert scan.hit_count == 300
        assert all(h.where.startswith("partition 1 block ") for h in scan.hits)
        assert [fs.label for fs in scan.filesystems] == ["partition 1"]
        assert len(scan.notes) == 1 and scan.notes[0].startswith("partition 2 (")
        with open_image(disk) as image:
            parts, _ = find_partitions(image)
        assert [(p.offset, p.size) for p in parts] == [
            (MiB, 16 * MiB),
            (40960 * 512, parts[1].size),
        ]


def test_the_qcow2_reader_reads_what_qemu_reads(tmp_path: Path) -> None:
    raw = blank(tmp_path / "disk.raw", 9 * MiB + 4096)  # not a whole number of clusters
    write_at(raw, 0, os.urandom(200_000))
    write_at(raw, 5 * MiB + 12345, b"tail" * 5000)
    write_at(raw, 9 * MiB, os.urandom(4096))
    expected = raw.read_bytes()
    plain = qcow2(raw)
    # Zero clusters (allocated and not) and a discarded one, written by QEMU itself.
    sh("qemu-io", "-f", "qcow2", "-c", "write -z 0 65536", "-c", "discard 131072 65536", plain)
    expected = bytes(65536) + expected[65536:131072] + bytes(65536) + expected[196608:]
    zstd = qcow2(raw, compress=True, compression="zstd")
    for image in (plain, qcow2(raw, compress=True), zstd):
        with open_image(image) as disk:
            check_with_qemu(disk)  # qemu-img map agrees with our extents
            assert disk.virtual_size == len(expected)
            if image == plain:
                assert disk.read(0, len(expected)) == expected
            streamed = bytearray(disk.virtual_size)
            for offset, data in disk.stream(chunk=MiB, workers=2):
                streamed[offset : offset + len(data)] = data
            assert streamed == disk.read(0, disk.virtual_size)
    for compressed in (qcow2(raw, compress=True), zstd):
        with open_image(compressed) as disk:
            assert disk.read(0, len(expected)) == raw.read_bytes()


def test_a_zstd_template_is_scanned_like_a_zlib_one(tmp_path: Path) -> None:
    # goldsmith compacts templates with zstd: the scan must find what it finds in zlib.
    fs = ext4(tmp_path, "fs.raw", {"k": b"goldsmith-0123456789ab\n" * 300}, size_mb=16)
    free_file(fs, "k")
    needle = [Needle("seed instance id", "text", b"goldsmith-0123456789ab")]
    zlib_scan = scan_image(qcow2(fs, compress=True), needle)
    zstd_scan = scan_image(qcow2(fs, compress=True, compression="zstd"), needle)
    assert zstd_scan.hit_count == zlib_scan.hit_count == 300
    assert zstd_scan.hits == zlib_scan.hits


def test_a_zstd_frame_inflates_no_further_than_its_cluster() -> None:
    bomb = zstandard.ZstdCompressor().compress(bytes(64 * MiB))
    assert len(bomb) < 4096
    assert inflate_zstd(bomb, 65536) == bytes(65536)
    # Padding after a frame that fills the cluster is never read as another frame.
    cluster = os.urandom(65536)
    packed = zstandard.ZstdCompressor().compress(cluster) + bytes(511)
    assert inflate_zstd(packed, 65536) == cluster


def test_a_damaged_zstd_cluster_stops_the_read(tmp_path: Path) -> None:
    raw = blank(tmp_path / "disk.raw", MiB)
    write_at(raw, 0, b"goldsmith " * 6000)
    image = qcow2(raw, compress=True, compression="zstd")
    with open_image(image) as disk:
        assert isinstance(disk, Qcow2Image)
        (entry,) = disk._clusters.values()
        host = entry & disk._coffset_mask
    write_at(image, host, b"\xff" * 16)  # no zstd frame starts like this
    with open_image(image) as disk, pytest.raises(DiskImageError, match="does not inflate"):
        disk.read(0, 4096)


def test_images_the_reader_cannot_vouch_for_are_refused(tmp_path: Path) -> None:
    base = qcow2(blank(tmp_path / "base.raw", MiB))
    overlay = tmp_path / "overlay.qcow2"
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay)
    # A compression type this reader does not know (QEMU knows none but 0 and 1 either).
    unknown = tmp_path / "unknown.qcow2"
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compression_type=zstd", unknown, "1M")
    write_at(unknown, 104, b"\x07")
    for image, reason in ((overlay, "backing file"), (unknown, "compression type 7")):
        with pytest.raises(DiskImageError, match=reason):
            open_image(image)
        results = check_disk_blocks(image, RECORD)
        assert [r.status for r in results] == [Status.error, Status.error]
        assert reason in results[0].observed


def test_qemu_disagreeing_on_extents_stops_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = blank(tmp_path / "disk.raw", 2 * MiB)
    write_at(disk, 0, b"data")
    fake = json.dumps([{"start": 0, "length": 2 * MiB, "depth": 0, "zero": True, "data": False}])
    monkeypatch.setattr(
        diskimage, "run", lambda *a, **k: subprocess.CompletedProcess([], 0, fake, "")
    )
    with open_image(disk) as image, pytest.raises(DiskImageError, match="disagree"):
        check_with_qemu(image)


def test_an_unreadable_image_is_an_error_result(tmp_path: Path) -> None:
    results = check_disk_blocks(tmp_path / "missing.qcow2", RECORD)
    assert [r.id for r in results] == [NEEDLES_ID, FREE_ZERO_ID]
    assert {r.status for r in results} == {Status.error}


# --- needles: what is searched and how it is named ---------------------------


def test_needles_from_the_build_record() -> None:
    needles, missing = needles_from_build(BUILD_VM)
    assert missing == []
    names = {n.name for n in needles}
    for name in (
        "builder key (raw)",
        "builder key (base64 key blob)",
        "builder key (SHA256 fingerprint)",
        "builder key (comment)",
        "builder key (base64 from byte 1, second half)",
        "build host key (raw)",
        "build host key (comment)",
        "build host key ed25519 (SHA256 fingerprint)",
        "build machine-id (text)",
        "build machine-id (raw)",
        "build machine-id (UUID)",
        "seed instance id (text)",
    ):
        assert name in names
    values = {n.name: n.value for n in needles}
    assert values["build machine-id (UUID)"] == b"87a0e1b1-4be9-49b1-ae33-3ba3b3a4834f"
    assert values["builder key (comment)"] == b"goldsmith-build-aba918df242e"
    assert len(values["builder key (raw)"]) == 32


def test_what_the_record_lacks_is_named() -> None:
    needles, missing = needles_from_build({"machine_id": "", "host_keys": {}, "builder_key": ""})
    assert needles == []
    assert missing == ["builder key", "build host key", "build machine-id", "seed instance id"]
    (result, _) = evaluate_block_scan(
        BlockScan(4 * MiB, 0, 0.1, (), (), (), 0, (), (), ()), missing
    )
    assert result.status is Status.error and "nothing to search for" in result.observed


def test_base64_forms_find_a_key_at_any_offset_and_across_line_breaks(tmp_path: Path) -> None:
    key = os.urandom(32)
    needles = encoded_needles("build host key", key)
    for lead in range(3):
        for width in (64, 70, 76):
            blob = base64.b64encode(os.urandom(lead + 30) + key + os.urandom(40)).decode()
            pem = "\n".join(blob[i : i + width] for i in range(0, len(blob), width)).encode()
            disk = blank(tmp_path / "disk.raw", MiB)
            write_at(disk, 1000, pem)
            assert scan_image(disk, needles).hit_count >= 1, (lead, width)


def test_needle_values_are_checked_and_stripped() -> None:
    with pytest.raises(ValueError, match="shorter than"):
        Needle("x", "raw", b"\0\0short\0\0")
    assert Needle("x", "raw", b"\0\0longer value\0").value == b"longer value"
    assert "value" not in repr(Needle("x", "raw", SECRET)) and str(SECRET) not in repr(
        Needle("x", "raw", SECRET)
    )


def test_a_secret_is_reported_by_name_and_never_by_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = ext4(tmp_path, "fs.raw", {"env": b"TOKEN=" + SECRET + b"\n" + bytes(5000)})
    free_file(image, "env")
    disk = qcow2(image, compress=True)
    secrets = secret_needles("API_TOKEN", SECRET.decode())
    assert all(n.secret for n in secrets)
    with caplog.at_level(logging.DEBUG):
        results = check_disk_blocks(disk, RECORD, secrets)
    by_id = {r.id: r for r in results}
    assert by_id[NEEDLES_ID].status is Status.failed
    assert "host secret API_TOKEN (raw) at 0x" in by_id[NEEDLES_ID].observed
    assert "host secret API_TOKEN (raw)" in caplog.text
    forbidden = [SECRET, *(n.value for n in secrets)]
    texts = [
        caplog.text,
        json.dumps([r.to_dict() for r in results]),
        repr(results),
        repr(secrets),
        repr(scan_image(disk, secrets)),
    ]
    for text in texts:
        for value in forbidden:
            assert value.decode() not in text


# --- evaluation ---------------------------------------------------------------


def scan_with(**changes: object) -> BlockScan:
    clean = BlockScan(
        virtual_size=4 << 30,
        data_bytes=600 * MiB,
        seconds=2.0,
        needles=("builder key (raw)", "build machine-id (text)"),
        families=("builder key", "build machine-id"),
        hits=(),
        hit_count=0,
        filesystems=(FreeSpace("partition 1", 4096, 890000, 0, (), ()),),
        notes=(),
        problems=(),
    )
    return dataclasses.replace(clean, **changes)  # type: ignore[arg-type]


def test_a_clean_scan_passes_and_says_what_it_searched() -> None:
    needles, free = evaluate_block_scan(scan_with(), ["seed instance id"])
    assert (needles.id, needles.status, needles.area) == (NEEDLES_ID, Status.passed, "hygiene")
    assert needles.observed == (
        "0 hits in 600 MiB of data (4.0 GiB virtual); 2 byte strings from: builder key, "
        "build machine-id; not recorded in build.json: seed instance id"
    )
    assert (free.id, free.status) == (FREE_ZERO_ID, Status.passed)
    assert free.observed == "partition 1: 0 of 890000 free 4 KiB blocks hold data"


def test_free_space_rules() -> None:
    dirty = (FreeSpace("partition 1", 4096, 890000, blockscan.MAX_FREE_DATA_BLOCKS + 1, (), (7,)),)
    assert evaluate_block_scan(scan_with(filesystems=dirty))[1].status is Status.failed
    bare = (FreeSpace("partition 1", 4096, 890000, 0, (("empty directory", 9),), ()),)
    (_, passed) = evaluate_block_scan(scan_with(filesystems=bare))
    assert passed.status is Status.passed
    assert passed.observed.endswith("hold data, 9 bare ext4 structure (9 empty directory)")
    none = evaluate_block_scan(scan_with(filesystems=(), notes=("partition 1 (MBR 0x83): x",)))
    assert none[1].status is Status.skipped and none[1].reason
    broken = evaluate_block_scan(scan_with(problems=("partition 1: group 3 ...",)))
    assert broken[1].status is Status.error


def test_hits_are_listed_by_name_offset_and_place() -> None:
    hits = tuple(
        Hit("builder key (raw)", 4096 * i, f"partition 1 block {i} (free)") for i in range(12)
    )
    (needles, _) = evaluate_block_scan(scan_with(hits=hits, hit_count=30))
    assert needles.status is Status.failed
    assert needles.observed.startswith(
        "30 hit(s): builder key (raw) at 0x0 (partition 1 block 0 (free)); "
    )
    assert needles.observed.endswith("; 22 more")


def test_freed_bare_structure_is_told_apart_from_data(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "empty").mkdir(parents=True)
    with open(tree / "sparse", "wb") as f:  # 40 separate extents: more than an inode holds
        for i in range(40):
            f.seek(i * 65536)
            f.write(b"x" * 4096)
    image = blank(tmp_path / "fs.raw", 64 * MiB)
    sh("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", tree, image)
    sh("debugfs", "-w", "-R", "rmdir /empty", image)
    free_file(image, "sparse")
    (space,) = scan_image(image, [Needle("x", "text", b"not anywhere on this disk")]).filesystems
    assert space.data_blocks == 40  # the file's own blocks
    assert space.structure == (("empty directory", 1), ("extent node", 1))


def test_structure_only_refuses_anything_with_bytes_of_data() -> None:
    empty = struct.pack("<IHBB", 11, 12, 1, 2) + b".\0\0\0"
    empty += struct.pack("<IHBB", 2, 4096 - 12, 2, 2) + b"..\0\0"
    empty += bytes(4096 - len(empty))
    assert structure_only(empty) == "empty directory"
    # A deleted entry's name left in the slack of ".." is data.
    assert structure_only(empty[:24] + b"\x0c\0\0\0\x10\0\x06\x01secret" + empty[38:]) is None
    with_tail = empty[:16] + struct.pack("<H", 4096 - 24) + empty[18:4084]
    with_tail += struct.pack("<IHBB", 0, 12, 0, 0xDE) + b"\xaa\xbb\xcc\xdd"
    assert structure_only(with_tail) == "empty directory"
    node = struct.pack("<4HI", 0xF30A, 1, 340, 0, 0) + struct.pack("<IHHI", 0, 8, 0, 1234)
    assert structure_only(node + bytes(4096 - len(node))) == "extent node"
    # Only a node of a block's own size (an inode's root node holds four entries).
    root = struct.pack("<4HI", 0xF30A, 1, 4, 0, 0) + struct.pack("<IHHI", 0, 8, 0, 1234)
    assert structure_only(root + bytes(4096 - len(root))) is None
    assert structure_only(bytes(4096)) is None and structure_only(os.urandom(4096)) is None


def test_host_secrets_named_by_the_build_are_searched_for(tmp_path: Path) -> None:
    image = ext4(tmp_path, "fs.raw", {"env": b"TOKEN=" + SECRET + b"\n"})
    free_file(image, "env")
    record = {
        "build_vm": BUILD_VM,
        "provision": [
            {"index": 0, "kind": "shell", "env_from_host": ["API_TOKEN"]},
            {"index": 1, "kind": "ansible", "env_from_host": ["API_TOKEN", "SHORT", "GONE"]},
        ],
    }
    environ = {"API_TOKEN": SECRET.decode(), "SHORT": "abc", "UNRELATED": "x" * 20}
    needles, unsearched = host_secret_needles(record, environ)
    assert {n.family for n in needles} == {"host secret API_TOKEN"} and all(
        n.secret for n in needles
    )
    assert unsearched == [
        "host secret SHORT (shorter than 8 bytes)",
        "host secret GONE (not set in goldsmith's environment)",
    ]
    results = {r.id: r for r in check_disk_blocks(image, record, environ=environ)}
    assert results[NEEDLES_ID].status is Status.failed  # found: a hit wins over what is missing
    assert "host secret API_TOKEN (raw) at 0x" in results[NEEDLES_ID].observed
    assert SECRET.decode() not in results[NEEDLES_ID].observed

    clean = ext4(tmp_path, "clean.raw", {"a": b"nothing to see"})
    (needles_result, _) = check_disk_blocks(clean, record, environ=environ)
    assert needles_result.status is Status.error
    assert needles_result.observed.endswith(
        "; not searched, so not proven absent: host secret SHORT (shorter than 8 bytes); "
        "host secret GONE (not set in goldsmith's environment)"
    )
    environ.update(SHORT="long enough now", GONE="set at last, too")
    assert check_disk_blocks(clean, record, environ=environ)[0].status is Status.passed


# --- zeroing what was freed after the seal (builder.build) ---------------------------


def test_free_blocks_with_bytes_are_found_and_zeroed_in_place(tmp_path: Path) -> None:
    """A file deleted after the seal's zeroing (freed at power-off): its blocks
    are found on the compacted qcow2, zeroed there with qemu-io, and nothing
    else changes: the live file still reads the same and fsck is clean."""
    from builder.build import _zero_stray_free_blocks

    secret = b"old library bytes\n" * 500  # 9000 bytes: three 4 KiB blocks
    live = b"live data\n" * 2000
    image = ext4(tmp_path, "fs.raw", {"gone": secret, "keep": live}, opts="-b 4096")
    free_file(image, "gone")
    disk = qcow2(image, compress=True, compression="zstd")
    ranges = free_blocks_with_bytes(disk)
    assert sum(length for _, length in ranges) == 3 * 4096
    assert all(at % 4096 == 0 for at, _ in ranges)

    _zero_stray_free_blocks(disk)

    assert free_blocks_with_bytes(disk) == []
    assert scan_image(disk, []).filesystems[0].data_blocks == 0
    raw = tmp_path / "after.raw"
    sh("qemu-img", "convert", "-O", "raw", disk, raw)
    assert b"old library bytes" not in raw.read_bytes()
    sh("e2fsck", "-fn", raw)  # raises on any inconsistency
    assert live in raw.read_bytes()


def test_a_clean_image_is_left_as_it_is(tmp_path: Path) -> None:
    from builder.build import _zero_stray_free_blocks

    image = ext4(tmp_path, "fs.raw", {"keep": b"live\n"}, opts="-b 4096")
    disk = qcow2(image, compress=True)
    before = disk.read_bytes()
    _zero_stray_free_blocks(disk)
    assert disk.read_bytes() == before
