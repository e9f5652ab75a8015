"""Output formats: the compacted qcow2 template converted for other hypervisors and clouds.

One function per format, each a ``qemu-img convert`` argv (never shell text)
with the source format named (``-f qcow2``): qemu-img must never guess a
format from the bytes it reads. OVA is written here, with Python's tarfile:
the OVF 1.0 descriptor (DMTF DSP0243), the streamOptimized VMDK, and a
manifest of SHA-256 digests, in that order, as POSIX ustar.

| format | file | how |
| --- | --- | --- |
| qcow2 | disk.qcow2 | the template itself (compacted, no backing file) |
| raw | disk.raw | ``qemu-img convert -O raw`` (sparse) |
| vmdk | disk.vmdk | ``-O vmdk -o subformat=streamOptimized`` (vSphere, OVA) |
| vhd | disk.vhd | ``-O vpc -o subformat=fixed,force_size=on``, size a whole MiB (Azure) |
| vhdx | disk.vhdx | ``-O vhdx`` (Hyper-V) |
| ova | disk.ova | tar of .ovf, .vmdk and .mf |
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import io
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from builder.cache import hash_file
from builder.errors import BuildError
from builder.log import complete_step
from builder.qemu_command import file_arg
from builder.run import run
from hardening.strictdata import DataError, loads_json

MIB = 1024 * 1024
CONVERT_TIMEOUT = 3600  # seconds, per format


class Compression(enum.StrEnum):
    """How the compacted qcow2's clusters are compressed (``compression:`` in the spec).

    zstd decompresses and compresses several times faster than zlib (measured
    here: a 4 GiB Debian template compacted in 3.3 s against 14.6 s, and a few
    MB smaller) but needs QEMU 5.1 or later to read; zlib is for older consumers.
    """

    zstd = "zstd"
    zlib = "zlib"


class OutputFormat(enum.StrEnum):
    qcow2 = "qcow2"
    raw = "raw"
    vmdk = "vmdk"
    vhd = "vhd"
    vhdx = "vhdx"
    ova = "ova"


# The order outputs are made and listed in (the VMDK before the OVA that holds it).
ALL_FORMATS = tuple(OutputFormat)
# What qemu-img calls each format it can read; OVA is a tar, not a disk image.
QEMU_FORMAT = {
    OutputFormat.qcow2: "qcow2",
    OutputFormat.raw: "raw",
    OutputFormat.vmdk: "vmdk",
    OutputFormat.vhd: "vpc",
    OutputFormat.vhdx: "vhdx",
}


def file_name(fmt: OutputFormat) -> str:
    """The output's name in the artifact folder: disk.qcow2, disk.raw, ..."""
    return f"disk.{fmt}"


@dataclasses.dataclass(frozen=True)
class Hardware:
    """What the OVF descriptor asks of the hypervisor: the spec's VM."""

    name: str
    version: str
    cpus: int
    memory: int  # MiB
    efi: bool = False  # UEFI firmware rather than BIOS
    secure_boot: bool = False


@dataclasses.dataclass(frozen=True)
class Output:
    """One file of the artifact, as build.json records it."""

    format: OutputFormat
    path: str  # the file's name in the artifact folder
    sha256: str
    sha512: str
    size: int

    def record(self) -> dict[str, Any]:
        return {
            "format": str(self.format),
            "path": self.path,
            "sha256": self.sha256,
            "sha512": self.sha512,
            "size": self.size,
        }


# --- qemu-img -----------------------------------------------------------------------

# qemu-img's own default, named here because it is what lets the conversion
# compress several clusters at once: with -W, QEMU's qcow2 driver compresses in
# a pool of threads while coroutines read ahead.
CONVERT_COROUTINES = 8


def compact_command(src: Path, dst: Path, compression: Compression) -> list[str]:
    """The ``qemu-img convert`` argv that compacts the sealed disk ``src``
    (a qcow2 overlay over its base) into the template ``dst``.

    ``-W`` (out-of-order writes) is safe here: ``dst`` is a new file that
    nothing reads until the conversion has ended, and the qcow2 format maps
    every cluster wherever it lands; only the order of clusters in the file
    depends on timing, never what a guest reads from it (which validation
    proves and the signature binds, byte for byte, after this).
    """
    return [
        *("qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", "-c"),
        *("-o", f"compression_type={compression}"),
        *("-m", str(CONVERT_COROUTINES), "-W"),
        *(file_arg(src), file_arg(dst)),
    ]


def compact(src: Path, dst: Path, compression: Compression) -> None:
    run(compact_command(src, dst, compression), timeout=CONVERT_TIMEOUT)


def image_info(path: Path, fmt: str) -> dict[str, Any]:
    """``qemu-img info`` of ``path`` read as ``fmt`` (never probed), parsed strictly."""
    out = run(["qemu-img", "info", "--output=json", "-f", fmt, file_arg(path)], timeout=120).stdout
    try:
        info = loads_json(out)
    except DataError as exc:
        raise BuildError(f"{path}: qemu-img info gave no readable answer ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("virtual-size"), int):
        raise BuildError(f"{path}: qemu-img info gave no virtual size")
    return info


def _convert(src: Path, dst: Path, fmt: str, *options: str, src_format: str = "qcow2") -> None:
    run(
        [
            *("qemu-img", "convert", "-f", src_format, "-O", fmt),
            *options,
            *(file_arg(src), file_arg(dst)),
        ],
        timeout=CONVERT_TIMEOUT,
    )


def convert_raw(src: Path, dst: Path) -> None:
    _convert(src, dst, "raw")


def convert_vmdk(src: Path, dst: Path) -> None:
    # streamOptimized: compressed grains in one file, what OVA and vSphere's
    # import take; monolithicFlat would be a descriptor naming another file.
    _convert(src, dst, "vmdk", "-o", "subformat=streamOptimized")


def convert_vhdx(src: Path, dst: Path) -> None:
    _convert(src, dst, "vhdx")


def convert_vhd(src: Path, dst: Path) -> None:
    """A fixed VHD whose virtual size is a whole number of MiB.

    Azure takes only fixed VHDs of a whole MiB. ``force_size=on`` keeps the
    size exact instead of rounding it to a CHS geometry. A size that is not a
    whole MiB is rounded up through a throwaway overlay, whose blocks past the
    template's end read as zeros, so the template itself is never written.
    """
    size = int(image_info(src, "qcow2")["virtual-size"])
    rounded = -(-size // MIB) * MIB
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".vhd-") as scratch:
        source = src
        if rounded != size:
            source = Path(scratch) / "rounded.qcow2"
            run(
                [
                    *("qemu-img", "create", "-q", "-f", "qcow2"),
                    *("-b", file_arg(src), "-F", "qcow2"),
                    *(file_arg(source), str(rounded)),
                ]
            )
        _convert(source, dst, "vpc", "-o", "subformat=fixed,force_size=on")


# --- OVF and OVA --------------------------------------------------------------------

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"
RASD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMW_NS = "http://www.vmware.com/schema/ovf"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
VMDK_STREAM_OPTIMIZED = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
# CIM_OperatingSystem.OSType 96: "Debian 64-Bit" (goldsmith builds Debian templates).
OS_TYPE_DEBIAN_64 = "96"
# CIM_ResourceAllocationSettingData.ResourceType values.
RESOURCE_CPU = "3"
RESOURCE_MEMORY = "4"
RESOURCE_SCSI = "6"
RESOURCE_NIC = "10"
RESOURCE_DISK = "17"
NETWORK = "VM Network"

for _prefix, _uri in (
    ("ovf", OVF_NS),
    ("rasd", RASD_NS),
    ("vssd", VSSD_NS),
    ("vmw", VMW_NS),
    ("xsi", XSI_NS),
):
    ET.register_namespace(_prefix, _uri)


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _sub(
    parent: ET.Element, ns: str, tag: str, text: str | None = None, **attrs: str
) -> ET.Element:
    element = ET.SubElement(parent, _q(ns, tag), {_q(OVF_NS, k): v for k, v in attrs.items()})
    if text is not None:
        element.text = text
    return element


def _item(section: ET.Element, fields: dict[str, str]) -> None:
    item = _sub(section, OVF_NS, "Item")
    # The CIM schema's RASD elements are a sequence in alphabetical order.
    for key in sorted(fields):
        _sub(item, RASD_NS, key, fields[key])


def render_ovf(hardware: Hardware, *, disk_file: str, disk_size: int, capacity: int) -> bytes:
    """The OVF 1.0 descriptor of one virtual system with the template's disk.

    CPUs, memory and firmware are the spec's; the disk is the streamOptimized
    VMDK ``disk_file`` (``disk_size`` bytes in the OVA) of ``capacity`` bytes.
    One E1000 NIC on "VM Network" and an LSI Logic SCSI controller: what every
    OVF consumer (vSphere, VirtualBox, ovftool) knows.
    """
    envelope = ET.Element(_q(OVF_NS, "Envelope"), {_q(OVF_NS, "version"): "1.0"})
    references = _sub(envelope, OVF_NS, "References")
    _sub(references, OVF_NS, "File", id="file1", href=disk_file, size=str(disk_size))
    disks = _sub(envelope, OVF_NS, "DiskSection")
    _sub(disks, OVF_NS, "Info", "Virtual disk information")
    _sub(
        disks,
        OVF_NS,
        "Disk",
        diskId="vmdisk1",
        fileRef="file1",
        capacity=str(capacity),
        capacityAllocationUnits="byte",
        format=VMDK_STREAM_OPTIMIZED,
    )
    networks = _sub(envelope, OVF_NS, "NetworkSection")
    _sub(networks, OVF_NS, "Info", "The logical networks")
    network = _sub(networks, OVF_NS, "Network", name=NETWORK)
    _sub(network, OVF_NS, "Description", f"The {NETWORK} network")

    system = _sub(envelope, OVF_NS, "VirtualSystem", id=hardware.name)
    _sub(system, OVF_NS, "Info", "A goldsmith VM template")
    _sub(system, OVF_NS, "Name", hardware.name)
    product = _sub(system, OVF_NS, "ProductSection")
    _sub(product, OVF_NS, "Info", "The template's name and version")
    _sub(product, OVF_NS, "Product", hardware.name)
    _sub(product, OVF_NS, "Version", hardware.version)
    os_section = _sub(system, OVF_NS, "OperatingSystemSection", id=OS_TYPE_DEBIAN_64)
    _sub(os_section, OVF_NS, "Info", "The guest operating system")
    _sub(os_section, OVF_NS, "Description", "Debian GNU/Linux (64-bit)")

    virtual = _sub(system, OVF_NS, "VirtualHardwareSection")
    _sub(virtual, OVF_NS, "Info", "Virtual hardware requirements")
    vssd = _sub(virtual, OVF_NS, "System")
    for key, value in (
        ("ElementName", "Virtual Hardware Family"),
        ("InstanceID", "0"),
        ("VirtualSystemIdentifier", hardware.name),
        ("VirtualSystemType", "vmx-10"),
    ):
        _sub(vssd, VSSD_NS, key, value)
    _item(
        virtual,
        {
            "AllocationUnits": "hertz * 10^6",
            "Description": "Number of virtual CPUs",
            "ElementName": f"{hardware.cpus} virtual CPU(s)",
            "InstanceID": "1",
            "ResourceType": RESOURCE_CPU,
            "VirtualQuantity": str(hardware.cpus),
        },
    )
    _item(
        virtual,
        {
            "AllocationUnits": "byte * 2^20",
            "Description": "Memory size",
            "ElementName": f"{hardware.memory} MB of memory",
            "InstanceID": "2",
            "ResourceType": RESOURCE_MEMORY,
            "VirtualQuantity": str(hardware.memory),
        },
    )
    _item(
        virtual,
        {
            "Address": "0",
            "ElementName": "SCSI controller 0",
            "InstanceID": "3",
            "ResourceSubType": "lsilogic",
            "ResourceType": RESOURCE_SCSI,
        },
    )
    _item(
        virtual,
        {
            "AddressOnParent": "0",
            "ElementName": "Hard disk 1",
            "HostResource": "ovf:/disk/vmdisk1",
            "InstanceID": "4",
            "Parent": "3",
            "ResourceType": RESOURCE_DISK,
        },
    )
    _item(
        virtual,
        {
            "AutomaticAllocation": "true",
            "Connection": NETWORK,
            "ElementName": "Network adapter 1",
            "InstanceID": "5",
            "ResourceSubType": "E1000",
            "ResourceType": RESOURCE_NIC,
        },
    )
    # Firmware has no element of its own in OVF 1.0; VMware's extension is the
    # one consumers read (VirtualBox too), and optional for the rest.
    config = {"firmware": "efi" if hardware.efi else "bios"}
    if hardware.efi:
        config["uefi.secureBoot.enabled"] = "true" if hardware.secure_boot else "false"
    for key, value in config.items():
        ET.SubElement(
            virtual,
            _q(VMW_NS, "Config"),
            {_q(OVF_NS, "required"): "false", _q(VMW_NS, "key"): key, _q(VMW_NS, "value"): value},
        )
    ET.indent(envelope)
    body: bytes = ET.tostring(envelope, encoding="utf-8", xml_declaration=True)
    return body + b"\n"


def write_ova(vmdk: Path, dst: Path, hardware: Hardware, *, mtime: int | None = None) -> None:
    """An OVA: a POSIX ustar of the descriptor, the VMDK and the manifest, in that order.

    The order is the OVF specification's: a consumer may stream the archive and
    must meet the descriptor first. The manifest lists SHA-256 digests in
    OpenSSL's format (``SHA256(name)= hex``), which OVF 2.0 and ovftool read.
    """
    capacity = int(image_info(vmdk, "vmdk")["virtual-size"])
    disk_size = vmdk.stat().st_size
    base = hardware.name
    ovf_name, disk_name, mf_name = f"{base}.ovf", f"{base}-disk1.vmdk", f"{base}.mf"
    ovf = render_ovf(hardware, disk_file=disk_name, disk_size=disk_size, capacity=capacity)
    vmdk_sha256 = hash_file(vmdk, "sha256")["sha256"]
    manifest = (
        f"SHA256({ovf_name})= {hashlib.sha256(ovf).hexdigest()}\n"
        f"SHA256({disk_name})= {vmdk_sha256}\n"
    ).encode()
    stamp = int(time.time()) if mtime is None else mtime

    def member(name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, stamp
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(member(ovf_name, len(ovf)), io.BytesIO(ovf))
        with open(vmdk, "rb") as disk:
            tar.addfile(member(disk_name, disk_size), disk)
        tar.addfile(member(mf_name, len(manifest)), io.BytesIO(manifest))


# --- all of them --------------------------------------------------------------------


@contextlib.contextmanager
def _scratch_vmdk(folder: Path, keep: bool) -> Iterator[Path]:
    """The VMDK an OVA is made from: the artifact's own when it is an output,
    else a hidden one removed afterwards."""
    if keep:
        yield folder / file_name(OutputFormat.vmdk)
        return
    with tempfile.TemporaryDirectory(dir=folder, prefix=".ova-") as scratch:
        yield Path(scratch) / "disk.vmdk"


Converter = Callable[[Path, Path], None]
CONVERTERS: dict[OutputFormat, Converter] = {
    OutputFormat.raw: convert_raw,
    OutputFormat.vmdk: convert_vmdk,
    OutputFormat.vhd: convert_vhd,
    OutputFormat.vhdx: convert_vhdx,
}


def make_outputs(
    disk: Path,
    formats: Iterable[OutputFormat],
    hardware: Hardware,
    *,
    step: Callable[[str, str], contextlib.AbstractContextManager[None]] | None = None,
) -> list[Output]:
    """Convert the compacted qcow2 ``disk`` into each other format, beside it;
    the records of those outputs, each hashed from its file (the caller has
    the qcow2's own digests).

    ``step(name, text)`` times each conversion (build.json's steps).
    """
    wanted = set(formats) | {OutputFormat.qcow2}
    folder = disk.parent

    def timed(name: str, text: str) -> contextlib.AbstractContextManager[None]:
        return step(name, text) if step is not None else complete_step(text)

    for fmt in ALL_FORMATS:
        if fmt not in wanted or fmt is OutputFormat.qcow2:
            continue
        target = folder / file_name(fmt)
        with timed(f"convert-{fmt}", f"Converting to {fmt}"):
            if fmt is OutputFormat.ova:
                with _scratch_vmdk(folder, OutputFormat.vmdk in wanted) as vmdk:
                    if not vmdk.exists():
                        convert_vmdk(disk, vmdk)
                    write_ova(vmdk, target, hardware)
            else:
                CONVERTERS[fmt](disk, target)
    outputs = []
    for fmt in ALL_FORMATS:
        if fmt in wanted and fmt is not OutputFormat.qcow2:
            path = folder / file_name(fmt)
            digests = hash_file(path, "sha256", "sha512")
            outputs.append(
                Output(fmt, path.name, digests["sha256"], digests["sha512"], path.stat().st_size)
            )
    return outputs
