"""build.json and the artifact folder: one typed record, written and read here only.

``goldsmith build`` writes a ``BuildRecord`` into each artifact folder; validate,
sign, history, outdated, release and build's ``--json`` read it back through
``read_build_record`` (or ``Artifact.read_build_record``), which checks every
field it returns and names the file and field of the first that is wrong (an
``InputError``, exit 2). The format is the JSON Schema whose ``$id`` is
``BUILD_SCHEMA`` (validate/schemas/build-v1.schema.json): the reader requires
what that schema requires, keeps the optional keys optional (an older record
without ``outputs``, ``firmware`` or ``provision`` still reads, and is written
back without them), and ignores keys it does not know.

``Artifact`` names the files of one folder, so no other module spells them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.atomic import write_atomically
from builder.errors import InputError
from builder.firmware import Firmware
from builder.formats import Compression, Output, OutputFormat, file_name
from hardening.strictdata import MAX_DOCUMENT, DataError, loads_json, read_regular

# The JSON Schema whose $id this is: validate/schemas/build-v1.schema.json.
BUILD_SCHEMA = "https://goldsmith.dev/build/v1"
# The field that holds the build key the artifact was built with (builder.buildkey).
BUILD_KEY_FIELD = "build_key"

# The files of an artifact folder.
IMAGE_NAME = "disk.qcow2"
BUILD_RECORD_NAME = "build.json"
VALIDATION_RECORD_NAME = "validation.json"
MANIFEST_NAME = "manifest.dsse.json"
SSH_SIGNATURE_NAME = MANIFEST_NAME + ".sig"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA512 = re.compile(r"[0-9a-f]{128}")


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One artifact folder (``<name>-<version>/``) and the files goldsmith keeps in it."""

    folder: Path

    @property
    def image(self) -> Path:
        return self.folder / IMAGE_NAME

    @property
    def build_record(self) -> Path:
        return self.folder / BUILD_RECORD_NAME

    @property
    def validation_record(self) -> Path:
        return self.folder / VALIDATION_RECORD_NAME

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST_NAME

    @property
    def ssh_signature(self) -> Path:
        return self.folder / SSH_SIGNATURE_NAME

    def output(self, fmt: OutputFormat) -> Path:
        """The file of one output format (the qcow2 is ``image``)."""
        return self.folder / file_name(fmt)

    def read_build_record(self) -> BuildRecord:
        return read_build_record(self.build_record)

    def recorded_build_key(self) -> str | None:
        """The build key build.json records, or None when there is none.

        An unreadable or foreign build.json has no key: the caller then builds
        again, which is always safe.
        """
        try:
            data = read_regular(self.build_record, MAX_DOCUMENT)
            document = loads_json(data)
        except (OSError, DataError):
            return None
        key = document.get(BUILD_KEY_FIELD) if isinstance(document, dict) else None
        return key if isinstance(key, str) and key.startswith("sha256:") else None


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


@dataclasses.dataclass(frozen=True)
class BuildRecord:
    """build.json: what one build made and from what.

    A field that is None (or an empty ``recorded_outputs``) was absent from the
    record read, and is left out when the record is written.
    """

    template_name: str
    template_version: str
    spec_path: str  # as given to build; the manifest names it relative to its repository
    spec_sha256: str
    profile_id: str
    profile_version: str
    profile_digest: str  # "sha256:<hex>" of the resolved profile
    profile_source: str  # the profile reference or file the build resolved
    base: tuple[BaseImage, ...]
    image_sha256: str
    image_sha512: str
    image_virtual_size: int
    tools: dict[str, str]  # "goldsmith" and "qemu" at least
    accelerator: str
    build_vm: BuildVM
    started: str  # RFC 3339, UTC
    finished: str
    image_path: str = IMAGE_NAME
    image_size: int | None = None
    image_compression: str | None = None  # "zstd" or "zlib"; None in older records
    # Every output format's file, the qcow2 first; None in records from before formats.
    recorded_outputs: tuple[Output, ...] | None = None
    steps: tuple[StepTime, ...] | None = None
    # The firmware object as recorded (type, tpm, ovmf, observed); None in records
    # from before firmware was recorded, which were all bios without a TPM.
    firmware_record: dict[str, Any] | None = None
    # Each provisioning step as recorded: index, kind, name, inputs (path relative
    # to the spec, sha256), env_from_host (names only, never values), seconds.
    provision: tuple[dict[str, Any], ...] = ()
    provision_recorded: bool = True  # False: a record from before provisioning
    apt_proxy: dict[str, Any] | None = None  # the proxy's variable name, never its URL
    sealed: tuple[str, ...] | None = None  # what sealing removed, in words
    build_key: str | None = None

    @property
    def firmware(self) -> Firmware:
        if self.firmware_record is None:
            return Firmware.bios
        return Firmware(self.firmware_record["type"])

    @property
    def tpm(self) -> bool:
        return bool(self.firmware_record and self.firmware_record.get("tpm", False))

    @property
    def outputs(self) -> tuple[Output, ...]:
        """The output formats other than the qcow2 (which is ``image``)."""
        return tuple(o for o in self.recorded_outputs or () if o.format is not OutputFormat.qcow2)

    def to_dict(self) -> dict[str, Any]:
        """The document, keys in the order goldsmith has always written them."""
        record: dict[str, Any] = {
            "schema": BUILD_SCHEMA,
            "template": {"name": self.template_name, "version": self.template_version},
            "spec": {"path": self.spec_path, "sha256": self.spec_sha256},
            "profile": {
                "id": self.profile_id,
                "version": self.profile_version,
                "digest": self.profile_digest,
                "source": self.profile_source,
            },
            # One base is written as an object, as it always was.
            "base": self.base[0].to_dict()
            if len(self.base) == 1
            else [b.to_dict() for b in self.base],
            "image": {
                "path": self.image_path,
                "sha256": self.image_sha256,
                "sha512": self.image_sha512,
                "virtual_size": self.image_virtual_size,
            },
        }
        if self.image_size is not None:
            record["image"]["size"] = self.image_size
        if self.image_compression is not None:
            record["image"]["compression"] = self.image_compression
        if self.recorded_outputs is not None:
            record["outputs"] = [o.record() for o in self.recorded_outputs]
        if self.steps is not None:
            record["steps"] = [s.to_dict() for s in self.steps]
        record["tools"] = self.tools
        record["accelerator"] = self.accelerator
        if self.firmware_record is not None:
            record["firmware"] = self.firmware_record
        record["build_vm"] = self.build_vm.to_dict()
        if self.provision_recorded or self.provision:
            record["provision"] = [dict(step) for step in self.provision]
        if self.apt_proxy is not None:
            record["apt_proxy"] = self.apt_proxy
        if self.sealed is not None:
            record["sealed"] = list(self.sealed)
        record["started"] = self.started
        record["finished"] = self.finished
        if self.build_key is not None:
            record[BUILD_KEY_FIELD] = self.build_key
        return record

    def write(self, path: Path) -> None:
        """build.json whole or not at all: a Ctrl-C mid-write must not leave a
        truncated record that a later build or ``history`` would read."""
        write_atomically(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> BuildRecord:
        """The record a build.json document describes; InputError naming ``path``
        and the field otherwise."""
        doc = JsonFields(data, path)
        schema = doc.get("schema")
        if schema != BUILD_SCHEMA:
            found = schema if isinstance(schema, str) else type(schema).__name__
            raise InputError(path, "schema", f"expected {BUILD_SCHEMA!r}, found {found!r}")
        # Fields are checked in the order the record lists them.
        return cls(
            template_name=doc.text("template.name"),
            template_version=doc.text("template.version"),
            spec_path=doc.text("spec.path"),
            spec_sha256=doc.text("spec.sha256"),
            profile_id=doc.text("profile.id"),
            profile_version=doc.text("profile.version"),
            profile_digest=doc.text("profile.digest"),
            profile_source=doc.text("profile.source"),
            base=_read_bases(doc.get("base"), path),
            image_path=doc.text("image.path") if "path" in doc.obj("image") else IMAGE_NAME,
            image_sha256=doc.text("image.sha256"),
            image_sha512=doc.text("image.sha512"),
            image_virtual_size=doc.integer("image.virtual_size"),
            image_size=None if doc.optional("image.size") is None else doc.integer("image.size"),
            image_compression=_read_compression(doc.optional("image.compression"), path),
            tools=_read_tools(doc.get("tools"), path),
            accelerator=doc.text("accelerator"),
            build_vm=_read_build_vm(doc.get("build_vm"), path),
            started=doc.text("started"),
            finished=doc.text("finished"),
            recorded_outputs=_read_outputs(doc.optional("outputs"), path),
            steps=_read_steps(doc.optional("steps"), path),
            firmware_record=_read_firmware(doc.optional("firmware"), path),
            provision=_read_provision(doc.optional("provision"), path),
            provision_recorded=doc.optional("provision") is not None,
            apt_proxy=_read_object(doc.optional("apt_proxy"), path, "apt_proxy"),
            sealed=_read_words(doc.optional("sealed"), path, "sealed"),
            build_key=_read_key(doc.optional(BUILD_KEY_FIELD), path),
        )


def _read_compression(value: Any, path: Path) -> str | None:
    if value is None:
        return None
    choices = [str(c) for c in Compression]
    if value not in choices:
        raise InputError(path, "image.compression", f"expected one of {', '.join(choices)}")
    return str(value)


def read_build_record_bytes(path: Path) -> tuple[bytes, BuildRecord]:
    """The record's exact bytes (what a manifest's digest covers) and the record
    they hold, read under the strict rules (regular file, bounded size, no
    duplicate keys); InputError naming the file, and the field, otherwise."""
    try:
        data = read_regular(path, MAX_DOCUMENT)
    except FileNotFoundError:
        raise InputError(path, None, "the artifact's build record (not found)") from None
    except DataError as exc:
        raise InputError(path, None, f"cannot be read as a build record ({exc})") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot be read ({exc.strerror or exc})") from None
    return data, parse_build_record(data, path)


def parse_build_record(data: bytes, path: Path) -> BuildRecord:
    """The record in ``data`` (build.json's bytes, read from ``path``)."""
    try:
        document = loads_json(data)
    except DataError as exc:
        raise InputError(path, None, f"expected a JSON document ({exc})") from None
    return BuildRecord.from_dict(document, path)


def read_build_record(path: Path) -> BuildRecord:
    """build.json at ``path``, checked field by field (see the module's note)."""
    return read_build_record_bytes(path)[1]


# --- field readers -------------------------------------------------------------


class JsonFields:
    """Typed access to one JSON object by dotted path; a bad field is an InputError.

    The one strict field reader of the JSON goldsmith writes: build.json here,
    and the signed statement in validate (verify reads its claims with it)."""

    def __init__(self, data: Any, path: Path, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise InputError(path, prefix or None, "expected a JSON object")
        self.data, self.path, self.prefix = data, path, prefix

    def name(self, dotted: str) -> str:
        return f"{self.prefix}.{dotted}" if self.prefix else dotted

    def optional(self, dotted: str) -> Any:
        value: Any = self.data
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value

    def get(self, dotted: str) -> Any:
        value: Any = self.data
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                raise InputError(self.path, self.name(dotted), "missing")
            value = value[part]
        return value

    def obj(self, dotted: str) -> dict[str, Any]:
        value = self.get(dotted)
        if not isinstance(value, dict):
            raise InputError(self.path, self.name(dotted), "expected a JSON object")
        return value

    def text(self, dotted: str) -> str:
        value = self.get(dotted)
        if not isinstance(value, str):
            raise InputError(self.path, self.name(dotted), "expected a string")
        return value

    def integer(self, dotted: str) -> int:
        value = self.get(dotted)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(self.path, self.name(dotted), "expected an integer")
        return value

    def number(self, dotted: str) -> float:
        value = self.get(dotted)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(self.path, self.name(dotted), "expected a number")
        return value

    def digest(self, dotted: str) -> dict[str, str]:
        value = self.get(dotted)
        if (
            not isinstance(value, dict)
            or "sha256" not in value
            or not all(isinstance(v, str) for v in value.values())
        ):
            raise InputError(
                self.path, self.name(dotted), 'expected {"sha256": "<hex>", ...} digests'
            )
        return dict(value)

    def names(self, dotted: str) -> list[str]:
        value = self.get(dotted)
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            raise InputError(self.path, self.name(dotted), "expected names")
        return list(value)


def _read_tools(raw: Any, path: Path) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise InputError(path, "tools", "expected a mapping of tool name to version string")
    for tool in ("goldsmith", "qemu"):
        if tool not in raw:
            raise InputError(path, f"tools.{tool}", "expected the tool's version")
    return dict(raw)


def _read_bases(raw: Any, path: Path) -> tuple[BaseImage, ...]:
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


def _read_build_vm(raw: Any, path: Path) -> BuildVM:
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


def _read_outputs(raw: Any, path: Path) -> tuple[Output, ...] | None:
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


def _read_steps(raw: Any, path: Path) -> tuple[StepTime, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InputError(path, "steps", "expected a list of steps")
    steps = []
    for index, entry in enumerate(raw):
        item = JsonFields(entry, path, f"steps[{index}]")
        steps.append(StepTime(item.text("name"), item.number("seconds"), item.text("status")))
    return tuple(steps)


def _read_firmware(raw: Any, path: Path) -> dict[str, Any] | None:
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


def _read_provision(raw: Any, path: Path) -> tuple[dict[str, Any], ...]:
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


def _read_object(raw: Any, path: Path, field: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InputError(path, field, "expected a JSON object")
    return dict(raw)


def _read_words(raw: Any, path: Path, field: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(w, str) for w in raw):
        raise InputError(path, field, "expected a list of strings")
    return tuple(raw)


def _read_key(raw: Any, path: Path) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InputError(path, BUILD_KEY_FIELD, "expected a string")
    return raw
