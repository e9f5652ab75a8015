"""Sealing proven at the block level: the template's disk image, byte by byte.

The in-guest hygiene checks (validate/hygiene.py) see files. A file system also
keeps what it no longer shows: blocks freed but never overwritten, copies of
metadata in its journal, directory entries of deleted names. This scan reads
the artifact's image itself, outside any guest (validate/diskimage.py: one
sparse, streaming pass, no root, no mounts, no loop devices), and

- searches every byte of the virtual disk for the build's identifiers: the
  builder's and the build VM's SSH keys (raw, base64 at every alignment, and
  fingerprint), the key comments, the build VM's machine-id (text, raw, UUID),
  the seed's instance id, and the value of every host secret the build was
  given (validate/needles.py makes them and searches the stream). A hit names
  the needle and the offset, never the value;
- counts, in every ext2/3/4 file system, the free blocks that are not all zero.
  The bitmaps are read by a small parser of our own, on the same stream:
  e2fsprogs reads neither qcow2 nor a pipe, so ``dumpe2fs``/``debugfs`` would
  need a raw copy of the whole disk first.

Needles live in memory only: they are built from build.json's public values
and from secrets the caller passes in, and nothing here writes or logs a value.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from builder.errors import GoldsmithError
from builder.log import log
from hardening.results import CheckResult, Status
from validate.diskimage import (
    CHUNK,
    DiskImage,
    check_with_qemu,
    find_partitions,
    open_image,
)
from validate.extfs import ExtFs, FsError, read_ext_fs, structure_only
from validate.needles import Needle, NeedleSearch, host_secret_needles, needles_from_build

NEEDLES_ID = "HYG-BLOCK-NEEDLES"
FREE_ZERO_ID = "HYG-BLOCK-FREE-ZERO"
# Sealing zero-fills free space after the last deletion, so a free block that
# still holds data is data the seal missed: none is tolerated. Blocks that hold
# bare ext4 structure (empty directories, extent nodes: inode and block
# numbers, no bytes of any file) are counted apart and allowed; the fill's own
# extent nodes and the private /tmp folders of services stopped at power-off
# are freed after the last fill, and no sealing from inside the guest can
# zero what the guest frees while it shuts down.
MAX_FREE_DATA_BLOCKS = 0
MAX_HITS_LISTED = 8


# --- free space ----------------------------------------------------------------


class _FreeCheck:
    """Free blocks of one file system that hold anything but zeros."""

    def __init__(self, fs: ExtFs) -> None:
        self.fs = fs
        self.starts = [a for a, _ in fs.free_runs]
        self.data: set[int] = set()
        self.structure: dict[int, str] = {}  # block -> what ext4 structure it holds
        self.straddling: set[int] = set()  # split between two pieces: judged at the end

    def _judge(self, block: int, content: bytes) -> None:
        kind = structure_only(content)
        if kind is None:
            self.data.add(block)
        else:
            self.structure[block] = kind

    def feed(self, offset: int, data: bytes) -> None:
        fs, bs = self.fs, self.fs.block_size
        lo, hi = max(offset, fs.offset), min(offset + len(data), fs.end)
        if lo >= hi:
            return
        first, last = (lo - fs.offset) // bs, (hi - 1 - fs.offset) // bs
        i = max(0, bisect.bisect_right(self.starts, first) - 1)
        while i < len(fs.free_runs) and fs.free_runs[i][0] <= last:
            a, b = fs.free_runs[i]
            i += 1
            x = max(fs.offset + max(a, first) * bs, offset) - offset
            y = min(fs.offset + min(b, last + 1) * bs, offset + len(data)) - offset
            if x >= y or data[x:y] == bytes(y - x):
                continue
            for at in range(x - (x + offset - fs.offset) % bs, y, bs):
                s, e = max(at, x), min(at + bs, y)
                if data[s:e] != bytes(e - s):
                    block = (at + offset - fs.offset) // bs
                    if (s, e) == (at, at + bs):
                        self._judge(block, data[s:e])
                    else:
                        self.straddling.add(block)

    def finish(self, image: DiskImage) -> FreeSpace:
        bs = self.fs.block_size
        for block in sorted(self.straddling):
            self._judge(block, image.read(self.fs.offset + block * bs, bs))
        kinds = collections.Counter(self.structure.values())
        return FreeSpace(
            self.fs.label,
            bs,
            self.fs.free_blocks,
            len(self.data),
            tuple(sorted(kinds.items())),
            tuple(sorted(self.data)[:5]),
        )


# --- the scan -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Hit:
    needle: str  # the needle's name, never its value
    offset: int  # byte offset in the virtual disk
    where: str  # "partition 1 block 166918 (free)", or outside any file system


@dataclasses.dataclass(frozen=True)
class FreeSpace:
    label: str
    block_size: int
    free_blocks: int
    data_blocks: int  # free blocks holding anything but zeros and bare ext4 structure
    structure: tuple[tuple[str, int], ...]  # ("empty directory", 9), ("extent node", 1)
    examples: tuple[int, ...]  # a few of the data blocks' numbers


@dataclasses.dataclass(frozen=True)
class BlockScan:
    virtual_size: int
    data_bytes: int  # what was read: the rest of the disk reads as zeros
    seconds: float
    needles: tuple[str, ...]  # names of what was searched
    families: tuple[str, ...]
    hits: tuple[Hit, ...]  # the first ones, in disk order
    hit_count: int
    filesystems: tuple[FreeSpace, ...]
    notes: tuple[str, ...]  # partitions not examined, and why
    problems: tuple[str, ...]  # file systems whose free space could not be read


def scan_image(
    path: Path, needles: Sequence[Needle], *, chunk: int = CHUNK, workers: int | None = None
) -> BlockScan:
    """One streaming pass over the image's data: needles and free-block contents."""
    started = time.monotonic()
    with open_image(path) as image:
        check_with_qemu(image)
        partitions, notes = find_partitions(image)
        checks: list[_FreeCheck] = []
        problems: list[str] = []
        for part in partitions:
            try:
                fs = read_ext_fs(image, part.label, part.offset)
            except FsError as exc:
                problems.append(exc.message)
                continue
            if fs is None:
                notes.append(f"{part.label} ({part.kind}): not ext2/3/4, free space not examined")
            else:
                checks.append(_FreeCheck(fs))
        search = NeedleSearch(needles)
        data_bytes = 0
        for offset, data in image.stream(chunk, workers or min(4, os.cpu_count() or 1)):
            data_bytes += len(data)
            search.feed(offset, data)
            for check in checks:
                check.feed(offset, data)
        virtual_size = image.virtual_size
        filesystems = [check.finish(image) for check in checks]

    def where(offset: int) -> str:
        for check in checks:
            if check.fs.offset <= offset < check.fs.end:
                return check.fs.describe(offset)
        return "outside any examined file system"

    hits = sorted(search.hits, key=lambda h: h[1])
    return BlockScan(
        virtual_size=virtual_size,
        data_bytes=data_bytes,
        seconds=time.monotonic() - started,
        needles=tuple(n.name for n in search.needles),
        families=tuple(dict.fromkeys(n.family for n in search.needles)),
        hits=tuple(Hit(n.name, at, where(at)) for n, at in hits),
        hit_count=search.count,
        filesystems=tuple(filesystems),
        notes=tuple(notes),
        problems=tuple(problems),
    )


def free_blocks_with_bytes(path: Path, *, chunk: int = CHUNK) -> list[tuple[int, int]]:
    """The byte ranges (offset, length) of the virtual disk that are free
    blocks of an ext2/3/4 file system and hold anything but zeros, data or
    bare structure alike, adjacent blocks merged. One pass like the scan's."""
    with open_image(path) as image:
        check_with_qemu(image)
        partitions, _ = find_partitions(image)
        checks = []
        for part in partitions:
            # One that cannot be read is left as it is: the scan reports it.
            with contextlib.suppress(FsError):
                fs = read_ext_fs(image, part.label, part.offset)
                if fs is not None:
                    checks.append(_FreeCheck(fs))
        for offset, data in image.stream(chunk, min(4, os.cpu_count() or 1)):
            for check in checks:
                check.feed(offset, data)
        for check in checks:
            check.finish(image)
    ranges: list[tuple[int, int]] = []
    for check in checks:
        bs = check.fs.block_size
        for block in sorted({*check.data, *check.structure}):
            start = check.fs.offset + block * bs
            if ranges and ranges[-1][0] + ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], ranges[-1][1] + bs)
            else:
                ranges.append((start, bs))
    return ranges


# --- results --------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def evaluate_block_scan(
    scan: BlockScan, unrecorded: Sequence[str] = (), unsearched: Sequence[str] = ()
) -> list[CheckResult]:
    """``unrecorded``: identifiers build.json lacks (an older build); ``unsearched``:
    host secrets the build used whose values this run cannot search for."""
    searched = f"{len(scan.needles)} byte strings from: {', '.join(scan.families) or 'nothing'}"
    if unrecorded:
        searched += f"; not recorded in build.json: {', '.join(unrecorded)}"
    if not scan.needles:
        status, observed = Status.error, "nothing to search for: " + searched
    elif scan.hit_count:
        listed = "; ".join(
            f"{h.needle} at {h.offset:#x} ({h.where})" for h in scan.hits[:MAX_HITS_LISTED]
        )
        more = scan.hit_count - min(len(scan.hits), MAX_HITS_LISTED)
        status = Status.failed
        observed = f"{scan.hit_count} hit(s): {listed}" + (f"; {more} more" if more else "")
    else:
        status = Status.passed
        observed = (
            f"0 hits in {_size(scan.data_bytes)} of data ({_size(scan.virtual_size)} virtual); "
            + searched
        )
        if unsearched:
            # The build used them; no proof they are gone until they are searched for.
            status = Status.error
            observed += "; not searched, so not proven absent: " + "; ".join(unsearched)
    needles = CheckResult(
        id=NEEDLES_ID,
        title="No trace of the build anywhere on the disk (block level)",
        area="hygiene",
        status=status,
        expected="none of the build's keys, machine-id, instance id or secrets in any byte",
        observed=observed,
        severity="high",
    )

    def describe(fs: FreeSpace) -> str:
        text = (
            f"{fs.label}: {fs.data_blocks} of {fs.free_blocks} free "
            f"{fs.block_size // 1024} KiB blocks hold data"
        )
        if fs.examples:
            text += f" (e.g. {', '.join(map(str, fs.examples))})"
        if fs.structure:
            kinds = ", ".join(f"{count} {kind}" for kind, count in fs.structure)
            text += f", {sum(n for _, n in fs.structure)} bare ext4 structure ({kinds})"
        return text

    per_fs = "; ".join(describe(fs) for fs in scan.filesystems)
    reason = ""
    if scan.problems:
        free_status, free_observed = Status.error, "; ".join(scan.problems)
    elif not scan.filesystems:
        free_status, free_observed = Status.skipped, "no ext2/3/4 file system found"
        reason = "free space is examined in ext2/3/4 file systems only"
    elif any(fs.data_blocks > MAX_FREE_DATA_BLOCKS for fs in scan.filesystems):
        free_status, free_observed = Status.failed, per_fs
    else:
        free_status, free_observed = Status.passed, per_fs
    if scan.notes:
        free_observed += "; " + "; ".join(scan.notes)
    free = CheckResult(
        id=FREE_ZERO_ID,
        title="Free blocks hold no data (block level)",
        area="hygiene",
        status=free_status,
        expected=(
            f"at most {MAX_FREE_DATA_BLOCKS} free blocks holding data in each ext2/3/4 file "
            "system (zeros, or bare structure: empty directories, extent nodes)"
        ),
        observed=free_observed,
        severity="medium",
        reason=reason,
    )
    return [needles, free]


def check_disk_blocks(
    disk: Path,
    record: Mapping[str, Any],
    secrets: Sequence[Needle] = (),
    environ: Mapping[str, str] | None = None,
) -> list[CheckResult]:
    """The block-level hygiene results for one image and its build record.

    Searched for: the identifiers in ``build_vm``, the host secrets the build's
    provisioning named (values from ``environ``, goldsmith's environment by
    default), and ``secrets`` given by the caller. An unreadable image is an error.
    """
    needles, unrecorded = needles_from_build(dict(record.get("build_vm") or {}))
    from_host, unsearched = host_secret_needles(record, os.environ if environ is None else environ)
    needles += from_host
    needles += secrets
    try:
        scan = scan_image(disk, needles)
    except (GoldsmithError, OSError) as exc:
        message = exc.message if isinstance(exc, GoldsmithError) else f"{disk}: {exc.strerror}"
        failed = [
            CheckResult(
                id=check_id,
                title=title,
                area="hygiene",
                status=Status.error,
                expected="a readable disk image",
                observed=message,
                severity="high",
            )
            for check_id, title in (
                (NEEDLES_ID, "No trace of the build anywhere on the disk (block level)"),
                (FREE_ZERO_ID, "Free blocks hold no data (block level)"),
            )
        ]
        return failed
    free = sum(fs.data_blocks for fs in scan.filesystems)
    log.info(
        "Block scan: %s of data in %s virtual, %d needles, %d hits, %d free blocks with data "
        "(%.1fs, %.0f MiB/s of virtual disk)",
        _size(scan.data_bytes),
        _size(scan.virtual_size),
        len(scan.needles),
        scan.hit_count,
        free,
        scan.seconds,
        scan.virtual_size / (1 << 20) / max(scan.seconds, 1e-6),
    )
    counts = collections.Counter(h.needle for h in scan.hits)
    for name, count in sorted(counts.items()):
        log.info("  %d hit(s) of %s", count, name)
    return evaluate_block_scan(scan, unrecorded, unsearched)
