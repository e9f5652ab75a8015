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
The parts of the record below its top level, and their readers, are
builder/record_sections.py's; its field reader is builder/json_fields.py's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from builder.atomic import write_atomically
from builder.errors import InputError
from builder.firmware import Firmware
from builder.formats import Output, OutputFormat, file_name
from builder.json_fields import JsonFields
from builder.record_sections import (
    BaseImage,
    BuildVM,
    StepTime,
    read_bases,
    read_build_vm,
    read_compression,
    read_firmware,
    read_object,
    read_outputs,
    read_provision,
    read_steps,
    read_tools,
    read_words,
)
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
            base=read_bases(doc.get("base"), path),
            image_path=doc.text("image.path") if "path" in doc.obj("image") else IMAGE_NAME,
            image_sha256=doc.text("image.sha256"),
            image_sha512=doc.text("image.sha512"),
            image_virtual_size=doc.integer("image.virtual_size"),
            image_size=None if doc.optional("image.size") is None else doc.integer("image.size"),
            image_compression=read_compression(doc.optional("image.compression"), path),
            tools=read_tools(doc.get("tools"), path),
            accelerator=doc.text("accelerator"),
            build_vm=read_build_vm(doc.get("build_vm"), path),
            started=doc.text("started"),
            finished=doc.text("finished"),
            recorded_outputs=read_outputs(doc.optional("outputs"), path),
            steps=read_steps(doc.optional("steps"), path),
            firmware_record=read_firmware(doc.optional("firmware"), path),
            provision=read_provision(doc.optional("provision"), path),
            provision_recorded=doc.optional("provision") is not None,
            apt_proxy=read_object(doc.optional("apt_proxy"), path, "apt_proxy"),
            sealed=read_words(doc.optional("sealed"), path, "sealed"),
            build_key=_read_key(doc.optional(BUILD_KEY_FIELD), path),
        )


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


def _read_key(raw: Any, path: Path) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InputError(path, BUILD_KEY_FIELD, "expected a string")
    return raw
