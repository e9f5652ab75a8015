"""The image file itself: its qcow2 header and its digests.

A qcow2 image can leave its data elsewhere: a backing file supplies every
cluster the image does not hold, and an external data file holds all of them.
The digest of such an image does not cover what a guest would read, so signing
and verification refuse it. So they do an image whose contents are not the
one disk validation saw: an encrypted one (what a guest reads depends on a key
kept elsewhere), one with internal snapshots (``-loadvm`` or ``qemu-img
snapshot -a`` brings back a disk nobody validated), one marked dirty or
corrupt, and one with incompatible features this parser does not know. The
header is parsed here, by hand, rather than asking qemu-img, which would follow
those references (and must not be needed on a deploy gate).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import struct
from pathlib import Path

from builder.cache import hash_file
from builder.errors import GoldsmithError, InputError

MAGIC = b"QFI\xfb"
# Header fields common to versions 2 and 3, big-endian (docs/interop/qcow2.txt in QEMU).
_V2 = struct.Struct(">4sIQIIQIIQQIIQ")  # 72 bytes
_V3 = struct.Struct(">QQQII")  # incompatible, compatible, autoclear features, refcount order, len
_EXTENSION = struct.Struct(">II")

INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_EXTERNAL_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION_TYPE = 1 << 3  # zstd instead of zlib: the contents are still all here
INCOMPAT_EXTENDED_L2 = 1 << 4  # subclusters: likewise
INCOMPAT_KNOWN = (
    INCOMPAT_DIRTY
    | INCOMPAT_CORRUPT
    | INCOMPAT_EXTERNAL_DATA_FILE
    | INCOMPAT_COMPRESSION_TYPE
    | INCOMPAT_EXTENDED_L2
)
AUTOCLEAR_DATA_FILE_RAW = 1 << 1
CRYPT_NONE = 0
CRYPT_NAMES = {1: "AES", 2: "LUKS"}
EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_DATA_FILE_NAME = 0x44415441  # "DATA"
EXT_CRYPTO_HEADER = 0x0537BE77  # where a LUKS header lives in the file


class ImageError(GoldsmithError):
    """The image is not one goldsmith will sign or trust (exit code 1)."""


@dataclasses.dataclass(frozen=True)
class Qcow2Header:
    version: int
    virtual_size: int
    cluster_bits: int
    crypt_method: int
    snapshots: int
    backing_file: str | None
    backing_format: str | None
    external_data_file: bool
    data_file_name: str | None
    data_file_raw: bool
    incompatible_features: int
    crypto_header: bool

    def external_references(self) -> list[str]:
        """What outside this file the image's contents depend on, in words."""
        found = []
        if self.backing_file is not None:
            found.append(f"a backing file ({self.backing_file!r})")
        if self.external_data_file or self.data_file_name is not None:
            name = f" ({self.data_file_name!r})" if self.data_file_name else ""
            found.append(f"an external data file{name}")
        return found

    def refusals(self) -> list[str]:
        """Why this image is not one goldsmith signs or trusts, in words; empty if none."""
        found = [f"names {' and '.join(refs)}" for refs in [self.external_references()] if refs]
        if self.crypt_method != CRYPT_NONE or self.crypto_header:
            method = CRYPT_NAMES.get(self.crypt_method, f"method {self.crypt_method}")
            found.append(f"is encrypted ({method}): what a guest reads depends on a key elsewhere")
        if self.snapshots:
            found.append(
                f"holds {self.snapshots} internal snapshot(s): other disk states nobody validated"
            )
        if self.incompatible_features & INCOMPAT_CORRUPT:
            found.append("is marked corrupt")
        if self.incompatible_features & INCOMPAT_DIRTY:
            found.append("is marked dirty (it was not closed cleanly)")
        unknown = self.incompatible_features & ~INCOMPAT_KNOWN
        if unknown:
            found.append(f"uses unknown incompatible features ({unknown:#x})")
        return found


def is_qcow2(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == MAGIC


def read_header(path: Path) -> Qcow2Header:
    """Parse the qcow2 header of ``path``; ImageError when it is not a sound qcow2 header."""
    try:
        # Non-blocking open and fstat: a FIFO or device named as the image fails
        # at once instead of hanging the gate.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InputError(path, None, "the image is not a regular file")
            head = f.read(_V2.size)
            if len(head) < 4 or head[:4] != MAGIC:
                raise ImageError(f"{path}: not a qcow2 image (no QFI\\xfb magic)")
            if len(head) < _V2.size:
                raise ImageError(f"{path}: qcow2 header is truncated")
            (
                _magic,
                version,
                backing_offset,
                backing_size,
                cluster_bits,
                virtual_size,
                crypt_method,
                _l1_size,
                _l1_offset,
                _refcount_offset,
                _refcount_clusters,
                snapshots,
                _snapshots_offset,
            ) = _V2.unpack(head)
            if version not in (2, 3):
                raise ImageError(f"{path}: qcow2 version {version} (expected 2 or 3)")
            if not 9 <= cluster_bits <= 21:
                raise ImageError(f"{path}: qcow2 cluster_bits {cluster_bits} out of range 9..21")
            cluster_size = 1 << cluster_bits
            incompatible = autoclear = 0
            header_length = _V2.size
            if version == 3:
                extra = f.read(_V3.size)
                if len(extra) < _V3.size:
                    raise ImageError(f"{path}: qcow2 v3 header is truncated")
                incompatible, _compat, autoclear, _order, header_length = _V3.unpack(extra)
                if not _V2.size + _V3.size <= header_length <= cluster_size:
                    raise ImageError(f"{path}: qcow2 header_length {header_length} is invalid")

            # Header extensions follow the header and must end within the first cluster.
            f.seek(header_length)
            area = f.read(cluster_size - header_length)
            extensions = _parse_extensions(area, path)

            backing_file = None
            if backing_offset != 0:
                if not 0 < backing_size <= 1023:
                    raise ImageError(f"{path}: qcow2 backing file name size {backing_size}")
                f.seek(backing_offset)
                raw = f.read(backing_size)
                backing_file = raw.decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise InputError(path, None, "image not found") from None
    except OSError as exc:
        raise InputError(path, None, f"image cannot be read ({exc.strerror})") from None

    def text(ext_type: int) -> str | None:
        data = extensions.get(ext_type)
        return data.decode("utf-8", errors="replace") if data is not None else None

    return Qcow2Header(
        version=version,
        virtual_size=virtual_size,
        cluster_bits=cluster_bits,
        crypt_method=crypt_method,
        snapshots=snapshots,
        backing_file=backing_file,
        backing_format=text(EXT_BACKING_FORMAT),
        external_data_file=bool(incompatible & INCOMPAT_EXTERNAL_DATA_FILE),
        data_file_name=text(EXT_DATA_FILE_NAME),
        data_file_raw=bool(autoclear & AUTOCLEAR_DATA_FILE_RAW),
        incompatible_features=incompatible,
        crypto_header=EXT_CRYPTO_HEADER in extensions,
    )


def _parse_extensions(area: bytes, path: Path) -> dict[int, bytes]:
    extensions: dict[int, bytes] = {}
    pos = 0
    while True:
        if pos + _EXTENSION.size > len(area):
            raise ImageError(f"{path}: qcow2 header extensions run past the first cluster")
        ext_type, length = _EXTENSION.unpack_from(area, pos)
        pos += _EXTENSION.size
        if ext_type == EXT_END:
            return extensions
        if pos + length > len(area):
            raise ImageError(f"{path}: qcow2 header extension {ext_type:#010x} is truncated")
        extensions[ext_type] = area[pos : pos + length]
        pos += (length + 7) & ~7  # each extension is padded to a multiple of 8 bytes


def require_self_contained(path: Path) -> Qcow2Header:
    """The header of ``path``, or ImageError if its contents live partly elsewhere,
    are encrypted, include snapshots, or cannot be known (dirty, corrupt, unknown
    features). Both ``sign`` and ``verify`` call this one function."""
    header = read_header(path)
    refusals = header.refusals()
    if refusals:
        references = header.external_references()
        reason = "; ".join(refusals)
        if references:
            reason += "; its digest would not cover what a guest reads"
        raise ImageError(
            f"{path}: qcow2 image {reason}",
            hint="flatten it first: qemu-img convert -O qcow2 IN OUT",
        )
    return header


def hash_image(path: Path) -> tuple[str, str]:
    """(sha256, sha512) of the image file, both recomputed from its bytes."""
    try:
        digests = hash_file(path, "sha256", "sha512")
    except FileNotFoundError:
        raise InputError(path, None, "image not found") from None
    except OSError as exc:
        raise InputError(path, None, f"image cannot be read ({exc.strerror})") from None
    return digests["sha256"], digests["sha512"]
