"""A disk image's guest-visible bytes, read without running QEMU and without root.

The block scan (validate/blockscan.py) must see every byte a guest would read
from a template's disk, quickly and only once. QEMU's own tools cannot stream
that: ``qemu-img convert`` and ``qemu-img dd`` resize their output and fail on
a pipe ("Could not resize file"); a temporary raw copy writes and reads the
whole disk again; ``qemu-nbd`` needs a server process and an NBD client. So the
two formats goldsmith produces are decoded here:

- raw: the file itself; its holes (SEEK_DATA/SEEK_HOLE) are never read.
- qcow2: the header and the L1/L2 tables give every allocated cluster; zero
  and unallocated clusters are never read, compressed clusters are inflated
  with zlib, or zstd when the header says so (goldsmith's default since
  templates are compacted with it), in worker threads (both release the GIL,
  so the caller searches one chunk while the workers decode the next ones).

QEMU keeps the authority on what the disk holds: ``qemu-img map`` must report
exactly the data extents decoded here, or reading stops with an error. Anything
this reader does not understand (backing or data files, encryption, internal
snapshots, an unknown compression type, subclusters, unknown features) is
refused, never skipped.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import errno
import itertools
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import zstandard

from builder.errors import GoldsmithError
from builder.qemu_command import file_arg
from builder.run import run
from hardening.strictdata import loads_json
from validate.qcow2 import (
    INCOMPAT_COMPRESSION_TYPE,
    INCOMPAT_EXTENDED_L2,
    ImageError,
    is_qcow2,
    read_header,
)

SECTOR = 512
CHUNK = 8 << 20  # what one worker decodes and the caller searches at a time
_L2_ZERO = 1  # QCOW_OFLAG_ZERO: the cluster reads as zeros
_L2_COMPRESSED = 1 << 62
_OFFSET_MASK = 0x00FFFFFFFFFFFE00  # host offset bits of L1 and standard L2 entries
_L1 = struct.Struct(">QII")  # at byte 32 of the header: size, crypt method, l1 size
_L1_OFFSET = struct.Struct(">Q")  # at byte 40
_HEADER_LENGTH = struct.Struct(">I")  # at byte 100 (version 3)
_COMPRESSION_TYPE_AT = 104  # one byte, present when the header is at least 105 bytes
_ZLIB, _ZSTD = 0, 1  # qcow2's compression_type values
_zstd = threading.local()  # a decompression context per worker: they are not thread-safe


# A cluster is at most 2 MiB, so no honest frame needs a larger window; a
# hostile image asking for more is refused rather than given the memory.
_ZSTD_MAX_WINDOW = 2 << 20


def _zstd_context() -> zstandard.ZstdDecompressor:
    context: zstandard.ZstdDecompressor | None = getattr(_zstd, "context", None)
    if context is None:
        context = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        _zstd.context = context
    return context


def inflate_zstd(packed: bytes, size: int) -> bytes:
    """One cluster as QEMU's qcow2 writes it with zstd: one or more frames that
    fill ``size`` bytes, then sector padding, never read once the cluster is
    full. At most ``size`` bytes come out, whatever the frames claim (a frame of
    a few bytes can expand to gigabytes). Raises zstandard.ZstdError on a
    damaged stream."""
    reader = _zstd_context().stream_reader(packed, read_across_frames=True)
    out = bytearray()
    while len(out) < size:
        piece = reader.read(size - len(out))
        if not piece:
            break
        out += piece
    return bytes(out)


class DiskImageError(GoldsmithError):
    """The image cannot be read the way a guest would see it."""


@dataclasses.dataclass(frozen=True)
class Partition:
    label: str  # "partition 1", or "whole disk" when there is no partition table
    offset: int  # bytes from the start of the disk
    size: int
    kind: str  # "MBR type 0x83", "GPT <type guid>", "no partition table"


class DiskImage:
    """Random access and a sparse stream over a disk's guest-visible bytes."""

    format = "raw"

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise DiskImageError(f"{path}: cannot open ({exc.strerror})") from None
        self.virtual_size = os.fstat(self._fd).st_size
        self.cluster_size = SECTOR

    def __enter__(self) -> DiskImage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def extents(self) -> list[tuple[int, int]]:
        """The [start, end) byte ranges that hold data, sorted and merged."""
        found: list[tuple[int, int]] = []
        offset = 0
        while offset < self.virtual_size:
            try:
                start = os.lseek(self._fd, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after offset
                    break
                if exc.errno == errno.EINVAL:  # no SEEK_DATA here: all of it is data
                    return [(0, self.virtual_size)] if self.virtual_size else []
                raise DiskImageError(f"{self.path}: {exc.strerror}") from None
            end = min(os.lseek(self._fd, start, os.SEEK_HOLE), self.virtual_size)
            found.append((start, end))
            offset = end
        return found

    def read(self, offset: int, length: int) -> bytes:
        """Guest-visible bytes; zeros past the end of the disk."""
        data = os.pread(self._fd, length, offset)
        return data + bytes(length - len(data))

    def stream(self, chunk: int = CHUNK, workers: int = 2) -> Iterator[tuple[int, bytes]]:
        """(offset, bytes) for every data extent, in order, in pieces of at most
        ``chunk`` bytes; holes are skipped. Workers read ahead, a few pieces deep."""
        chunk = max(self.cluster_size, chunk - chunk % self.cluster_size)
        pieces = [
            (start, min(chunk, end - start))
            for first, end in self.extents()
            for start in range(first, end, chunk)
        ]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            ahead: collections.deque[tuple[int, concurrent.futures.Future[bytes]]]
            ahead = collections.deque()
            queue = iter(pieces)
            for start, length in queue:
                ahead.append((start, pool.submit(self.read, start, length)))
                if len(ahead) > 2 * workers:
                    first, future = ahead.popleft()
                    yield first, future.result()
            while ahead:
                first, future = ahead.popleft()
                yield first, future.result()


class Qcow2Image(DiskImage):
    format = "qcow2"

    def __init__(self, path: Path) -> None:
        try:
            header = read_header(path)
        except ImageError as exc:
            raise DiskImageError(str(exc)) from None
        reasons = header.refusals()
        self._compression = _ZLIB
        if header.incompatible_features & INCOMPAT_COMPRESSION_TYPE:
            self._compression = _compression_type(path)
            if self._compression != _ZSTD:
                reasons.append(
                    f"compresses clusters with compression type {self._compression}, "
                    "which this reader does not know (zlib 0 and zstd 1 are)"
                )
        if header.incompatible_features & INCOMPAT_EXTENDED_L2:
            reasons.append("uses subclusters (extended L2 entries), which this reader refuses")
        if reasons:
            raise DiskImageError(
                f"{path}: the block scan reads no image that " + "; ".join(reasons)
            )
        super().__init__(path)
        self.virtual_size = header.virtual_size
        self.cluster_bits = header.cluster_bits
        self.cluster_size = 1 << header.cluster_bits
        head = os.pread(self._fd, 48, 0)
        _, _, l1_size = _L1.unpack_from(head, 24)
        (l1_offset,) = _L1_OFFSET.unpack_from(head, 40)
        # Compressed L2 entries: host offset in the low bits, extra sectors above.
        self._csize_shift = 62 - (self.cluster_bits - 8)
        self._csize_mask = (1 << (self.cluster_bits - 8)) - 1
        self._coffset_mask = (1 << self._csize_shift) - 1
        self._clusters = self._read_tables(l1_offset, l1_size)

    def _read_tables(self, l1_offset: int, l1_size: int) -> dict[int, int]:
        """Cluster index -> L2 entry, for every cluster that holds data."""
        per_l2 = self.cluster_size // 8
        if l1_size * per_l2 * self.cluster_size < self.virtual_size or l1_size > 1 << 25:
            raise DiskImageError(f"{self.path}: the L1 table does not cover the virtual size")
        raw_l1 = os.pread(self._fd, 8 * l1_size, l1_offset)
        if len(raw_l1) != 8 * l1_size:
            raise DiskImageError(f"{self.path}: the L1 table lies past the end of the file")
        clusters: dict[int, int] = {}
        for index, entry in enumerate(struct.unpack(f">{l1_size}Q", raw_l1)):
            table = entry & _OFFSET_MASK
            if not table:
                continue
            raw_l2 = os.pread(self._fd, self.cluster_size, table)
            if len(raw_l2) != self.cluster_size or table % self.cluster_size:
                raise DiskImageError(f"{self.path}: L2 table {index} is outside the file")
            for slot, l2 in enumerate(struct.unpack(f">{per_l2}Q", raw_l2)):
                # Plain zero clusters and unallocated ones read as zeros (no backing file).
                if l2 & _L2_COMPRESSED or (l2 & _OFFSET_MASK and not l2 & _L2_ZERO):
                    clusters[index * per_l2 + slot] = l2
        last = -(-self.virtual_size // self.cluster_size)
        if any(c >= last for c in clusters):
            raise DiskImageError(f"{self.path}: clusters mapped past the virtual size")
        return clusters

    def extents(self) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        size = self.cluster_size
        for index in sorted(self._clusters):
            start, end = index * size, min((index + 1) * size, self.virtual_size)
            if found and found[-1][1] == start:
                found[-1] = (found[-1][0], end)
            else:
                found.append((start, end))
        return found

    def _cluster(self, index: int) -> bytes:
        entry = self._clusters.get(index)
        size = self.cluster_size
        if entry is None:
            return bytes(size)
        if entry & _L2_COMPRESSED:
            host = entry & self._coffset_mask
            sectors = ((entry >> self._csize_shift) & self._csize_mask) + 1
            packed = os.pread(self._fd, sectors * SECTOR - (host % SECTOR), host)
            try:
                if self._compression == _ZSTD:
                    data = inflate_zstd(packed, size)
                else:
                    # Raw deflate with a 4 KiB window, as QEMU writes it; the stream
                    # may end early (sector padding follows) but must fill the cluster.
                    data = zlib.decompressobj(-12).decompress(packed, size)
            except (zlib.error, zstandard.ZstdError) as exc:
                raise DiskImageError(
                    f"{self.path}: cluster {index} does not inflate ({exc})"
                ) from None
        else:
            host = entry & _OFFSET_MASK
            data = os.pread(self._fd, size, host) if host % size == 0 else b""
        if len(data) != size:
            raise DiskImageError(f"{self.path}: cluster {index} is truncated or misplaced")
        return data

    def read(self, offset: int, length: int) -> bytes:
        size = self.cluster_size
        first, last = offset // size, (offset + length - 1) // size
        data = b"".join(self._cluster(i) for i in range(first, last + 1))
        start = offset - first * size
        out = data[start : start + length]
        return out + bytes(length - len(out))


def _compression_type(path: Path) -> int:
    """The header's compression_type byte; an image whose header is too short
    to hold it while claiming it is refused."""
    try:
        with open(path, "rb") as f:
            head = f.read(_COMPRESSION_TYPE_AT + 1)
    except OSError as exc:
        raise DiskImageError(f"{path}: cannot open ({exc.strerror})") from None
    if len(head) <= _COMPRESSION_TYPE_AT:
        raise DiskImageError(f"{path}: the qcow2 header ends before its compression type")
    (length,) = _HEADER_LENGTH.unpack_from(head, 100)
    if length <= _COMPRESSION_TYPE_AT:
        raise DiskImageError(
            f"{path}: the qcow2 header ({length} bytes) is too short for its compression type"
        )
    return head[_COMPRESSION_TYPE_AT]


def open_image(path: Path) -> DiskImage:
    """The image as a guest sees it: qcow2 when it carries qcow2's magic, else raw."""
    try:
        qcow2 = is_qcow2(path)
    except OSError as exc:
        raise DiskImageError(f"{path}: cannot open ({exc.strerror})") from None
    return Qcow2Image(path) if qcow2 else DiskImage(path)


def check_with_qemu(image: DiskImage) -> None:
    """Refuse to go on unless QEMU sees data exactly where this reader does."""
    out = run(
        ["qemu-img", "map", "--output=json", "-f", image.format, file_arg(image.path)],
        timeout=600,
    ).stdout
    theirs: list[tuple[int, int]] = []
    for entry in loads_json(out):
        if not entry.get("data"):
            continue
        start, end = int(entry["start"]), int(entry["start"]) + int(entry["length"])
        if theirs and theirs[-1][1] == start:
            theirs[-1] = (theirs[-1][0], end)
        else:
            theirs.append((start, end))
    ours = image.extents()
    if theirs != ours:
        pairs = itertools.zip_longest(ours, theirs, fillvalue=(-1, -1))
        where = next(f"{max(a[0], b[0]):#x}" for a, b in pairs if a != b)
        raise DiskImageError(
            f"{image.path}: qemu-img map and the block reader disagree on where data lies "
            f"(first difference near {where}); refusing to scan what QEMU would not show"
        )


# --- partition tables ---------------------------------------------------------

_MBR_ENTRY = struct.Struct("<B3sB3sII")
_GPT_HEADER = struct.Struct("<8s64xQII")  # signature, then at 72: entries LBA, count, size
_GPT_ENTRY = struct.Struct("<16s16sQQ")
_EXTENDED = {0x05, 0x0F, 0x85}


def find_partitions(image: DiskImage) -> tuple[list[Partition], list[str]]:
    """Primary MBR and GPT partitions; notes for what is not looked into."""
    mbr = image.read(0, SECTOR)
    if mbr[510:512] != b"\x55\xaa":
        return [Partition("whole disk", 0, image.virtual_size, "no partition table")], []
    parts: list[Partition] = []
    notes: list[str] = []
    for number in range(4):
        _, _, kind, _, first, count = _MBR_ENTRY.unpack_from(mbr, 446 + 16 * number)
        if kind == 0 or count == 0:
            continue
        if kind == 0xEE:
            return _gpt_partitions(image)
        if kind in _EXTENDED:
            notes.append(f"partition {number + 1}: logical partitions are not examined")
            continue
        parts.append(
            Partition(f"partition {number + 1}", first * SECTOR, count * SECTOR, f"MBR {kind:#04x}")
        )
    return parts, notes


def _gpt_partitions(image: DiskImage) -> tuple[list[Partition], list[str]]:
    signature, entries_lba, count, entry_size = _GPT_HEADER.unpack_from(image.read(SECTOR, 92))
    if signature != b"EFI PART" or entry_size < _GPT_ENTRY.size or count > 1024:
        return [], ["a protective MBR without a readable GPT: partitions not examined"]
    table = image.read(entries_lba * SECTOR, count * entry_size)
    parts = []
    for number in range(count):
        kind, _, first, last = _GPT_ENTRY.unpack_from(table, number * entry_size)
        if kind != bytes(16) and last >= first:
            parts.append(
                Partition(
                    f"partition {number + 1}",
                    first * SECTOR,
                    (last - first + 1) * SECTOR,
                    f"GPT {kind.hex()}",
                )
            )
    return parts, []
