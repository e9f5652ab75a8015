"""The parts of build.json below its top level, each with its reader.

The base images, the build VM's identity, the step times, and the optional
sections a newer goldsmith added (outputs, firmware, provisioning, the image's
compression, the apt proxy, what sealing removed): their models, and the
reader of each, which checks it field by field and names the field of the
first that is wrong. builder/record.py's ``BuildRecord`` is made of them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.errors import InputError
from builder.firmware import Firmware
from builder.formats import Compression, Output, OutputFormat, file_name
from builder.json_fields import JsonFields

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA512 = re.compile(r"[0-9a-f]{128}")


@dataclasses.dataclass(frozen=True)
class BaseImage:
    """One base image the template was built from."""

    name: str
    uri: str
    source: str  # file | url | debootstrap
    digest: dict[str, str]  # {"sha256": "<hex>", ...}
    # What else the base recorded (format, recipe inputs, size), as it recorded it.
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def inputs(self) -> Mapping[str, Any] | None:
        """A debootstrap base's recipe inputs, when recorded."""
        inputs = self.details.get("inputs")
        return inputs if isinstance(inputs, dict) else None

    def to_dict(self) -> dict[str, Any]:
        fixed = {"source": self.source, "name": self.name, "uri": self.uri, "digest": self.digest}
        return {**fixed, **self.details}


@dataclasses.dataclass(frozen=True)
class BuildVM:
    """The build VM's identity: public values validation proves sealing removed."""

    machine_id: str
    host_keys: dict[str, str]  # key type -> SHA256 fingerprint
    builder_key: str | None = None  # the builder's public key (OpenSSH line)
    host_key: str | None = None  # the pinned host key's public half
    instance_id: str | None = None  # the seed's instance id

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"machine_id": self.machine_id, "host_keys": self.host_keys}
        for key in ("builder_key", "host_key", "instance_id"):
            if getattr(self, key) is not None:
                record[key] = getattr(self, key)
        return record


@dataclasses.dataclass(frozen=True)
class StepTime:
    name: str
    seconds: float
    status: str  # ok | failed

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": self.seconds, "status": self.status}


def read_compression(value: Any, path: Path) -> str | None:
    if value is None:
        return None
    choices = [str(c) for c in Compression]
    if value not in choices:
        raise InputError(path, "image.compression", f"expected one of {', '.join(choices)}")
    return str(value)


def read_tools(raw: Any, path: Path) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise InputError(path, "tools", "expected a mapping of tool name to version string")
    for tool in ("goldsmith", "qemu"):
        if tool not in raw:
            raise InputError(path, f"tools.{tool}", "expected the tool's version")
    return dict(raw)


def read_bases(raw: Any, path: Path) -> tuple[BaseImage, ...]:
    """One base (an object, as build writes it) or a list of them."""
    entries = raw if isinstance(raw, list) else [raw]
    bases = []
    for index, entry in enumerate(entries):
        item = JsonFields(entry, path, f"base[{index}]" if isinstance(raw, list) else "base")
        known = ("source", "name", "uri", "digest")
        bases.append(
            BaseImage(
                name=item.text("name"),
                uri=item.text("uri"),
                source=item.text("source"),
                digest=item.digest("digest"),
                details={k: v for k, v in entry.items() if k not in known},
            )
        )
    if not bases:
        raise InputError(path, "base", "expected a base image")
    return tuple(bases)


def read_build_vm(raw: Any, path: Path) -> BuildVM:
    item = JsonFields(raw, path, "build_vm")
    host_keys = item.get("host_keys")
    if not isinstance(host_keys, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in host_keys.items()
    ):
        raise InputError(path, "build_vm.host_keys", "expected key types and fingerprints")
    optional = {}
    for key in ("builder_key", "host_key", "instance_id"):
        if item.optional(key) is not None:
            optional[key] = item.text(key)
    return BuildVM(machine_id=item.text("machine_id"), host_keys=dict(host_keys), **optional)


def read_outputs(raw: Any, path: Path) -> tuple[Output, ...] | None:
    """``outputs``, each checked field by field; the file names are goldsmith's
    own (disk.<format>), never a path read from the record."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InputError(path, "outputs", "expected a list of outputs")
    outputs: list[Output] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        field = f"outputs[{index}]"
        if not isinstance(entry, dict):
            raise InputError(path, field, "expected a JSON object")
        fmt = entry.get("format")
        if fmt not in [str(f) for f in OutputFormat] or fmt in seen:
            raise InputError(path, f"{field}.format", "expected one of each output format")
        seen.add(fmt)
        output_format = OutputFormat(fmt)
        if entry.get("path") != file_name(output_format):
            raise InputError(path, f"{field}.path", f"expected {file_name(output_format)!r}")
        for key, pattern in (("sha256", _SHA256), ("sha512", _SHA512)):
            if not isinstance(entry.get(key), str) or not pattern.fullmatch(entry[key]):
                raise InputError(path, f"{field}.{key}", "expected a lowercase hex digest")
        size = entry.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InputError(path, f"{field}.size", "expected a size in bytes")
        outputs.append(
            Output(output_format, file_name(output_format), entry["sha256"], entry["sha512"], size)
        )
    return tuple(outputs)


def read_steps(raw: Any, path: Path) -> tuple[StepTime, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InputError(path, "steps", "expected a list of steps")
    steps = []
    for index, entry in enumerate(raw):
        item = JsonFields(entry, path, f"steps[{index}]")
        steps.append(StepTime(item.text("name"), item.number("seconds"), item.text("status")))
    return tuple(steps)


def read_firmware(raw: Any, path: Path) -> dict[str, Any] | None:
    """The firmware: its kind and the TPM checked, the rest (OVMF files, what
    the build VM saw) kept as recorded."""
    if raw is None:
        return None
    item = JsonFields(raw, path, "firmware")
    if item.text("type") not in [str(f) for f in Firmware]:
        raise InputError(path, "firmware.type", "expected bios, uefi or uefi-secureboot")
    if not isinstance(raw.get("tpm", False), bool):
        raise InputError(path, "firmware.tpm", "expected true or false")
    return dict(raw)


def read_provision(raw: Any, path: Path) -> tuple[dict[str, Any], ...]:
    """The provisioning steps, each checked field by field and copied into a
    fresh dict, so nothing unexpected rides into a signed statement."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InputError(path, "provision", "expected a list of steps")
    steps = []
    for index, entry in enumerate(raw):
        item = JsonFields(entry, path, f"provision[{index}]")
        raw_inputs = item.get("inputs")
        if not isinstance(raw_inputs, list):
            raise InputError(path, item.name("inputs"), "expected a list")
        inputs = []
        for n, one_raw in enumerate(raw_inputs):
            one = JsonFields(one_raw, path, item.name(f"inputs[{n}]"))
            digest = one.text("sha256")
            if not _SHA256.fullmatch(digest):
                raise InputError(path, one.name("sha256"), "expected 64 lower-case hex digits")
            inputs.append({"path": one.text("path"), "sha256": digest})
        seconds = entry.get("seconds", 0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise InputError(path, item.name("seconds"), "expected a number")
        steps.append(
            {
                "index": item.integer("index"),
                "kind": item.text("kind"),
                "name": item.text("name"),
                "inputs": inputs,
                "env_from_host": item.names("env_from_host"),
                "seconds": seconds,
            }
        )
    return tuple(steps)


def read_object(raw: Any, path: Path, field: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InputError(path, field, "expected a JSON object")
    return dict(raw)


def read_words(raw: Any, path: Path, field: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(w, str) for w in raw):
        raise InputError(path, field, "expected a list of strings")
    return tuple(raw)
