"""Free space of ext2/3/4 file systems, read from a disk image by a small parser of our own.

The block scan counts free blocks that still hold data. e2fsprogs could say
which blocks are free (``dumpe2fs``, ``debugfs -R ffb``), but it reads neither
qcow2 nor a stream, so it would need a raw copy of the whole disk first. What
is needed is small and stable on-disk format: the superblock, the group
descriptors (meta_bg included), the block bitmaps, and for groups whose bitmap
was never written (BLOCK_UNINIT) the bitmap the kernel would build
(ext4_init_block_bitmap). Every group's count of free blocks must match its
descriptor's, so a misreading is an error, not a wrong answer. The journal's
blocks are located too, to say where a hit lies.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
import struct

from builder.errors import GoldsmithError
from validate.diskimage import DiskImage

_EXT_MAGIC = 0xEF53
_COMPAT_HAS_JOURNAL = 0x4
_COMPAT_SPARSE_SUPER2 = 0x200
_INCOMPAT_META_BG = 0x10
_INCOMPAT_64BIT = 0x80
_RO_COMPAT_SPARSE_SUPER = 0x1
_RO_COMPAT_BIGALLOC = 0x200
_BG_BLOCK_UNINIT = 0x2
_EXTENTS_FL = 0x80000


class FsError(GoldsmithError):
    """A file system's free-space maps cannot be read or do not add up."""


@dataclasses.dataclass(frozen=True)
class ExtFs:
    label: str
    offset: int  # byte offset of the file system on the disk
    block_size: int
    blocks: int
    free_runs: tuple[tuple[int, int], ...]  # [first, end) block numbers, sorted
    journal_runs: tuple[tuple[int, int], ...]

    @property
    def free_blocks(self) -> int:
        return sum(end - first for first, end in self.free_runs)

    @property
    def end(self) -> int:
        return self.offset + self.blocks * self.block_size

    def describe(self, offset: int) -> str:
        block = (offset - self.offset) // self.block_size
        state = "in use"
        if any(a <= block < b for a, b in self.journal_runs):
            state = "journal"
        else:
            i = bisect.bisect_right(self.free_runs, (block, 1 << 62)) - 1
            if i >= 0 and self.free_runs[i][0] <= block < self.free_runs[i][1]:
                state = "free"
        return f"{self.label} block {block} ({state})"


def _u16(buf: bytes, at: int) -> int:
    return int.from_bytes(buf[at : at + 2], "little")


def _u32(buf: bytes, at: int) -> int:
    return int.from_bytes(buf[at : at + 4], "little")


def _has_super(group: int, ro_compat: int, compat: int, backups: tuple[int, int]) -> bool:
    if group == 0:
        return True
    if compat & _COMPAT_SPARSE_SUPER2:
        return group in backups
    if group <= 1 or not ro_compat & _RO_COMPAT_SPARSE_SUPER:
        return True
    if group % 2 == 0:
        return False
    for base in (3, 5, 7):
        power = base
        while power < group:
            power *= base
        if power == group:
            return True
    return False


def read_ext_fs(image: DiskImage, label: str, offset: int) -> ExtFs | None:
    """The free-block map of the ext2/3/4 file system at ``offset``; None if there is none.

    Follows the kernel: group descriptors (meta_bg included), block bitmaps,
    and for BLOCK_UNINIT groups the bitmap ext4_init_block_bitmap() would
    build. Each group's count must match its descriptor, or FsError.
    """
    sb = image.read(offset + 1024, 1024)
    if _u16(sb, 0x38) != _EXT_MAGIC:
        return None
    compat, incompat, ro_compat = _u32(sb, 0x5C), _u32(sb, 0x60), _u32(sb, 0x64)
    wide = bool(incompat & _INCOMPAT_64BIT)
    blocks = _u32(sb, 0x4) | (_u32(sb, 0x150) << 32 if wide else 0)
    first_data, log_block = _u32(sb, 0x14), _u32(sb, 0x18)
    per_group, inodes_per_group = _u32(sb, 0x20), _u32(sb, 0x28)
    inode_size = _u16(sb, 0x58) if _u32(sb, 0x4C) else 128  # revision 0: 128 bytes
    reserved_gdt, journal_inode = _u16(sb, 0xCE), _u32(sb, 0xE0)
    desc_size = _u16(sb, 0xFE) if wide else 32
    first_meta_bg = _u32(sb, 0x104)
    backups = (_u32(sb, 0x24C), _u32(sb, 0x250))
    if ro_compat & _RO_COMPAT_BIGALLOC:
        raise FsError(f"{label}: bigalloc (cluster bitmaps) is not read by the block scan")
    if log_block > 6 or per_group == 0 or desc_size < 32 or blocks <= first_data:
        raise FsError(f"{label}: the ext superblock is not one this scan can read")
    bs = 1024 << log_block
    if offset + blocks * bs > image.virtual_size:
        raise FsError(f"{label}: the ext file system claims more blocks than the disk holds")
    groups = -(-(blocks - first_data) // per_group)
    per_desc_block = bs // desc_size
    gdt_blocks = -(-groups // per_desc_block)
    itable_blocks = -(-(inodes_per_group * inode_size) // bs)

    def has_super(group: int) -> bool:
        return _has_super(group, ro_compat, compat, backups)

    def group_start(group: int) -> int:
        return first_data + group * per_group

    meta_bg = bool(incompat & _INCOMPAT_META_BG)
    descriptors = b""
    for n in range(gdt_blocks):
        if not meta_bg or n < first_meta_bg:
            where = first_data + n + 1
        else:
            group = per_desc_block * n
            where = group_start(group) + (1 if has_super(group) else 0)
        descriptors += image.read(offset + where * bs, bs)

    def base_meta(group: int) -> int:  # superblock, descriptors, reserved GDT at the start
        count = 1 if has_super(group) else 0
        if not meta_bg or group < first_meta_bg * per_desc_block:
            if count:
                count += (first_meta_bg if meta_bg else gdt_blocks) + reserved_gdt
        else:
            first = group - group % per_desc_block
            count += 1 if group in (first, first + 1, first + per_desc_block - 1) else 0
        return count

    runs: list[tuple[int, int]] = []
    tables: list[int] = []
    for group in range(groups):
        desc = descriptors[group * desc_size : (group + 1) * desc_size]
        bitmap = _u32(desc, 0) | (_u32(desc, 0x20) << 32 if desc_size >= 64 else 0)
        inodes = _u32(desc, 4) | (_u32(desc, 0x24) << 32 if desc_size >= 64 else 0)
        table = _u32(desc, 8) | (_u32(desc, 0x28) << 32 if desc_size >= 64 else 0)
        free = _u16(desc, 0xC) | (_u16(desc, 0x2C) << 16 if desc_size >= 64 else 0)
        flags = _u16(desc, 0x12)
        tables.append(table)
        start = group_start(group)
        size = min(per_group, blocks - start)
        if flags & _BG_BLOCK_UNINIT:
            # Never written: what the kernel builds when it first reads it.
            meta = min(size, base_meta(group))
            used = ["1"] * meta + ["0"] * (size - meta)
            for block in (bitmap, inodes, *range(table, table + itable_blocks)):
                if start <= block < start + size:
                    used[block - start] = "1"
            bits = "".join(used)
        else:
            raw = image.read(offset + bitmap * bs, bs)
            # Bit i of the bitmap (least significant bit first) is block start + i.
            bits = format(int.from_bytes(raw, "little"), f"0{bs * 8}b")[::-1][:size]
        group_runs = [(start + m.start(), start + m.end()) for m in re.finditer("0+", bits)]
        counted = sum(b - a for a, b in group_runs)
        if counted != free:
            raise FsError(
                f"{label}: group {group} has {counted} free blocks in its bitmap but "
                f"{free} in its descriptor; the file system was not cleanly unmounted"
            )
        if runs and group_runs and runs[-1][1] == group_runs[0][0]:
            runs[-1] = (runs[-1][0], group_runs.pop(0)[1])
        runs += group_runs
    journal: list[tuple[int, int]] = []
    if compat & _COMPAT_HAS_JOURNAL and 0 < journal_inode <= inodes_per_group:
        where = offset + tables[0] * bs + (journal_inode - 1) * inode_size
        inode = image.read(where, max(inode_size, 128))
        if _u32(inode, 0x20) & _EXTENTS_FL:
            journal = _extent_runs(image, offset, bs, inode[0x28:0x64], depth=5)
    return ExtFs(label, offset, bs, blocks, tuple(runs), tuple(journal))


def _extent_runs(
    image: DiskImage, offset: int, bs: int, node: bytes, *, depth: int
) -> list[tuple[int, int]]:
    """Physical [first, end) runs of an extent tree (used to label journal blocks)."""
    magic, entries, _, level = struct.unpack_from("<4H", node, 0)
    if magic != 0xF30A or depth < 0:
        return []
    runs: list[tuple[int, int]] = []
    for k in range(min(entries, (len(node) - 12) // 12)):
        if level == 0:
            _, length, high, low = struct.unpack_from("<IHHI", node, 12 + 12 * k)
            first = (high << 32) | low
            runs.append((first, first + (length - 32768 if length > 32768 else length)))
        else:
            _, low, high, _ = struct.unpack_from("<IIHH", node, 12 + 12 * k)
            child = image.read(offset + ((high << 32) | low) * bs, bs)
            runs += _extent_runs(image, offset, bs, child, depth=depth - 1)
    return runs


def structure_only(block: bytes) -> str | None:
    """What a block holds when it holds nothing but ext4 structure, else None.

    An empty directory ("." and ".." and, with metadata_csum, its checksum
    tail) or an extent-tree node names inode and block numbers and nothing
    else: no file's bytes, no name. Any other non-zero byte, a deleted entry's
    name in a directory's slack included, makes the block data. Such blocks
    are freed after the last zero-fill: the fill file's own extent nodes, and
    the private /tmp folders systemd removes when services stop at power-off.
    """
    size = len(block)

    def zero(start: int, end: int) -> bool:
        return block.count(0, start, end) == end - start

    # ext4 zeroes a block it makes an extent node, and a node shrinks without
    # clearing its old records: past the header there are only block numbers.
    magic, entries, maximum, depth = struct.unpack_from("<4H", block, 0)
    node = magic == 0xF30A and entries <= maximum == (size - 12) // 12 and depth <= 5
    if node and zero(12 + 12 * maximum + 4, size):
        return "extent node"
    _, length, name_length, _ = struct.unpack_from("<IHBB", block, 0)
    if (length, name_length, block[8:12]) == (12, 1, b".\0\0\0"):
        _, length, name_length, _ = struct.unpack_from("<IHBB", block, 12)
        end = 12 + length
        if name_length == 2 and block[20:24] == b"..\0\0" and zero(24, min(end, size)):
            if end == size:
                return "empty directory"
            # metadata_csum: a fake entry (inode 0, length 12, type 0xDE), then the checksum.
            if end == size - 12 and block[size - 12 : size - 4] == b"\0\0\0\0\x0c\0\0\xde":
                return "empty directory"
    return None
