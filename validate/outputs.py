"""The template's other output formats (raw, VMDK, VHD, VHDX, OVA) in records,
statements and verification.

build.json lists each output with its digests; ``sign`` recomputes them from
the files and makes each output a subject of the signed statement, after the
qcow2 (subject 0). ``verify --format F`` or ``--all`` checks an output's file
against its own subject, and then what qemu-img makes of it: no backing file,
no data file, no extent outside the file itself. The digest is compared
first, so qemu-img only ever parses bytes a trusted key signed.
"""

from __future__ import annotations

import dataclasses
import hmac
import re
import tarfile
from pathlib import Path
from typing import Any

from builder.errors import InputError
from builder.formats import MIB, QEMU_FORMAT, Output, OutputFormat, image_info
from hardening.strictdata import escape
from validate.qcow2 import ImageError, hash_image

OTHER_FORMATS = tuple(f for f in OutputFormat if f is not OutputFormat.qcow2)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA512 = re.compile(r"[0-9a-f]{128}")
# VMDK create types whose data is all in the one file; the others are a
# descriptor naming extent files elsewhere.
_SELF_CONTAINED_VMDK = frozenset({"streamOptimized", "monolithicSparse"})


def subject_name(template: str, version: str, fmt: OutputFormat) -> str:
    return f"{template}-{version}.{fmt}"


def changed_outputs(artifact_dir: Path, outputs: tuple[Output, ...]) -> list[str]:
    """The outputs whose file is missing or differs from build.json, in words."""
    problems = []
    for output in outputs:
        path = artifact_dir / output.path
        if not path.is_file():
            problems.append(f"{path} is missing")
            continue
        sha256, sha512 = hash_image(path)
        if (sha256, sha512) != (output.sha256, output.sha512):
            problems.append(
                f"{path} has sha256 {sha256[:16]}..., build.json {output.sha256[:16]}..."
            )
    return problems


def output_subjects(
    template: str, version: str, outputs: tuple[Output, ...]
) -> list[dict[str, Any]]:
    """One in-toto subject per output, after the qcow2's."""
    return [
        {
            "name": subject_name(template, version, output.format),
            "digest": {"sha256": output.sha256, "sha512": output.sha512},
        }
        for output in outputs
    ]


@dataclasses.dataclass(frozen=True)
class OutputSubject:
    format: OutputFormat
    name: str
    sha256: str
    sha512: str


def read_output_subjects(subjects: list[Any], source: Path) -> tuple[OutputSubject, ...]:
    """Subjects 1.. of a statement: one per other output format, the format
    named by the subject's extension. InputError for anything else (the
    caller's reader turns it into "not trusted")."""
    found: list[OutputSubject] = []
    for index, raw in enumerate(subjects, start=1):
        field = f"payload.subject[{index}]"
        name = raw.get("name") if isinstance(raw, dict) else None
        digest = raw.get("digest") if isinstance(raw, dict) else None
        if not isinstance(name, str) or not isinstance(digest, dict):
            raise InputError(source, field, "expected a subject with a name and digests")
        extension = name.rpartition(".")[2]
        if extension == OutputFormat.qcow2:
            raise InputError(
                source, f"{field}.name", "expected exactly one subject for the qcow2 image"
            )
        if extension not in [str(f) for f in OTHER_FORMATS]:
            raise InputError(
                source,
                f"{field}.name",
                f"expected a name ending in one of .{', .'.join(OTHER_FORMATS)}",
            )
        fmt = OutputFormat(extension)
        if any(s.format is fmt for s in found):
            raise InputError(source, f"{field}.name", f"a second {fmt} subject")
        sha256, sha512 = digest.get("sha256"), digest.get("sha512")
        if not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)) or not (
            isinstance(sha512, str) and _SHA512.fullmatch(sha512)
        ):
            raise InputError(source, f"{field}.digest", "expected lowercase hex sha256 and sha512")
        found.append(OutputSubject(fmt, name, sha256, sha512))
    return tuple(found)


def digest_mismatch(path: Path, subject: str, expected: tuple[str, str]) -> str | None:
    """Why the file at ``path`` is not the signed subject named ``subject``
    whose (sha256, sha512) are ``expected``; None when both digests match."""
    sha256, sha512 = hash_image(path)
    for algorithm, actual, want in zip(
        ("sha256", "sha512"), (sha256, sha512), expected, strict=True
    ):
        if not hmac.compare_digest(actual, want):
            return (
                f"{path}: {algorithm} {actual} does not match the manifest subject "
                f"{escape(subject)} ({want}); the image was altered or is another one"
            )
    return None


def check_output(path: Path, subject: OutputSubject, virtual_size: int) -> None:
    """ImageError unless ``path`` is the signed output: its digests first, then
    its header as qemu-img reads it (OVA: its members)."""
    if not path.exists():
        raise ImageError(f"{path}: the manifest signs a {subject.format} output, but it is missing")
    if not path.is_file():
        raise InputError(path, None, f"expected the {subject.format} image, a regular file")
    if problem := digest_mismatch(path, subject.name, (subject.sha256, subject.sha512)):
        raise ImageError(problem)
    if subject.format is OutputFormat.ova:
        _check_ova(path)
        return
    _check_header(path, subject.format, virtual_size)


def _check_header(path: Path, fmt: OutputFormat, virtual_size: int) -> None:
    try:
        info = image_info(path, QEMU_FORMAT[fmt])
    except Exception as exc:  # qemu-img's refusal, in its own words
        message = getattr(exc, "message", str(exc))
        raise ImageError(f"{path}: qemu-img cannot read it as {fmt}: {message}") from None
    refusals = []
    if info.get("backing-filename") or info.get("full-backing-filename"):
        refusals.append(f"names a backing file ({escape(str(info.get('backing-filename')))})")
    data = info.get("format-specific", {}).get("data", {})
    if not isinstance(data, dict):
        data = {}
    if data.get("data-file"):
        refusals.append("names an external data file")
    if fmt is OutputFormat.vmdk:
        if data.get("create-type") not in _SELF_CONTAINED_VMDK:
            refusals.append(f"is a {escape(str(data.get('create-type')))} VMDK (extents elsewhere)")
        for extent in data.get("extents", []):
            if not isinstance(extent, dict) or extent.get("filename") != str(path.absolute()):
                refusals.append("has an extent outside the file")
                break
    expected = -(-virtual_size // MIB) * MIB if fmt is OutputFormat.vhd else virtual_size
    if info["virtual-size"] != expected:
        refusals.append(f"has virtual size {info['virtual-size']}, the manifest {expected}")
    if refusals:
        raise ImageError(
            f"{path}: {fmt} image {'; '.join(refusals)}; its digest would not cover what a "
            "guest reads"
        )


def _check_ova(path: Path) -> None:
    """An OVA is a tar of three plain files (.ovf, .vmdk, .mf) with plain names."""
    try:
        with tarfile.open(path, "r:") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError) as exc:
        raise ImageError(f"{path}: not a readable OVA ({exc})") from None
    suffixes = [m.name.rpartition(".")[2] for m in members]
    if suffixes != ["ovf", "vmdk", "mf"] or not all(
        m.isfile() and "/" not in m.name and not m.name.startswith(".") for m in members
    ):
        raise ImageError(f"{path}: an OVA holds the .ovf, .vmdk and .mf files, in that order")
