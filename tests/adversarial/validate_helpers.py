"""A signed goldsmith artifact to tamper with, and the CLI to judge it.

Self-contained (records written per the data formats, a small qcow2 from
qemu-img, keys from keygen's own code) so these suites do not lean on the unit
tests' helpers.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import json
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from builder.cli import cli
from hardening.results import CheckResult, Status
from validate.dsse import PAYLOAD_TYPE_IN_TOTO, sign_envelope
from validate.keys import PrivateKey, generate_key, load_private_key, write_keypair
from validate.manifest import encode_statement, sign_artifact
from validate.results import Package, ValidationRun

# An hour ago by the real clock: the command line verifies at the real time.
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(hours=1)

RESULTS = (
    CheckResult("SSH-01", "Root login disabled", "ssh", Status.passed, "no", "no", "high"),
    CheckResult("SYSCTL-01", "kptr_restrict", "sysctl", Status.passed, "2", "2"),
    CheckResult(
        "KMOD-03", "usb-storage", "kmod", Status.waived, "off", "on", reason="ticket OPS-12"
    ),
    CheckResult("HYG-001", "builder key removed", "hygiene", Status.passed, "absent", "absent"),
)


def make_qcow2(path: Path, *options: str, size: str = "1M") -> Path:
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", *options, str(path), size],
        check=True,
        cwd=path.parent,
    )
    return path


def write_records(
    artifact: Path,
    results: Sequence[CheckResult] = RESULTS,
    *,
    name: str = "debian-12-baseline",
    version: str = "1.2.0",
) -> None:
    """build.json and validation.json for artifact/disk.qcow2 as it is now."""
    data = (artifact / "disk.qcow2").read_bytes()
    sha256, sha512 = hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest()
    digest = "sha256:" + "22" * 32
    build = {
        "schema": "https://goldsmith.dev/build/v1",
        "template": {"name": name, "version": version},
        "spec": {"path": f"/abs/{name}.yaml", "sha256": "11" * 32},
        "profile": {"id": "baseline", "version": "1", "digest": digest, "source": "baseline"},
        "base": {
            "source": "debootstrap",
            "name": "debian-bookworm",
            "uri": "http://deb.debian.org/debian",
            "digest": {"sha256": "33" * 32},
        },
        "image": {
            "path": "disk.qcow2",
            "sha256": sha256,
            "sha512": sha512,
            "virtual_size": 1 << 20,
        },
        "tools": {"goldsmith": "0.1.0", "qemu": "7.2.22"},
        "accelerator": "kvm",
        "build_vm": {"machine_id": "44" * 16, "host_keys": {}},
        "started": "2026-11-27T08:00:00Z",
        "finished": "2026-11-27T08:20:00Z",
    }
    (artifact / "build.json").write_text(json.dumps(build, indent=2))
    ValidationRun(
        template_name=name,
        template_version=version,
        image_path="disk.qcow2",
        image_sha256=sha256,
        image_sha512=sha512,
        profile_id="baseline",
        profile_version="1",
        profile_digest=digest,
        started="2026-11-27T08:30:00Z",
        finished="2026-11-27T08:33:00Z",
        accelerator="tcg",
        goldsmith_version="0.1.0",
        timings={"total": 1.0},
        results=tuple(results),
        packages=(Package("openssh-server", "1:9.2p1-2+deb12u3", "amd64"),),
    ).write(artifact / "validation.json")


def make_artifact(
    root: Path,
    *,
    version: str = "1.2.0",
    name: str = "debian-12-baseline",
    qemu_options: Sequence[str] = (),
) -> Path:
    artifact = root / f"{name}-{version}"
    artifact.mkdir()
    make_qcow2(artifact / "disk.qcow2", *qemu_options)
    write_records(artifact, name=name, version=version)
    return artifact


def make_key(root: Path, name: str = "signing") -> Path:
    path = root / f"{name}.pem"
    write_keypair(generate_key(), path, passphrase=None)
    return path


def pub(key: Path) -> Path:
    return key.with_name(key.name + ".pub")


@dataclasses.dataclass
class Signed:
    """A signed artifact and the key pair that signed it."""

    artifact: Path
    key: Path

    @property
    def manifest(self) -> Path:
        return self.artifact / "manifest.dsse.json"

    @property
    def image(self) -> Path:
        return self.artifact / "disk.qcow2"

    @property
    def pub(self) -> Path:
        return pub(self.key)

    def envelope(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.manifest.read_bytes())
        return doc

    def write_envelope(self, doc: Any) -> None:
        self.manifest.write_text(json.dumps(doc, indent=2))

    def statement(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(base64.b64decode(self.envelope()["payload"]))
        return doc

    def resign(self, payload: bytes, *keys: PrivateKey) -> None:
        """A valid signature by the trusted key (or ``keys``) over ``payload``:
        what a careless or compromised signer would produce."""
        signers = list(keys) or [load_private_key(self.key)]
        self.manifest.write_bytes(sign_envelope(PAYLOAD_TYPE_IN_TOTO, payload, signers).to_json())

    def edit_statement(self, edit: Callable[[dict[str, Any]], None]) -> None:
        statement = self.statement()
        edit(statement)
        self.resign(encode_statement(statement))


def sign(
    root: Path,
    *,
    version: str = "1.2.0",
    key: Path | None = None,
    qemu_options: Sequence[str] = (),
) -> Signed:
    artifact = make_artifact(root, version=version, qemu_options=qemu_options)
    key = key or make_key(root)
    sign_artifact(artifact, key, now=NOW)
    return Signed(artifact, key)


def goldsmith(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


_PROGRESS = re.compile(r"\[\s*\d+\.\ds\] ")


def assert_one_line(text: str) -> str:
    """``text`` is exactly one line, with no control character in it."""
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)
    line = text[:-1]
    assert line.isprintable(), repr(line)
    return line


def error_lines(stderr: str) -> list[str]:
    """stderr without progress lines ("[   0.1s] Hashing ...") and hints: what is
    left is what went wrong, which must be one line."""
    return [
        line
        for line in stderr.splitlines()
        if not _PROGRESS.match(line) and not line.startswith("  hint: ")
    ]


def assert_not_trusted(result: Result, exit_code: int = 1) -> str:
    """The verdict is a refusal: exit 1 and one NOT TRUSTED line on stdout (or,
    for the deployer's own bad files, exit 2 and one error line on stderr);
    never a traceback, never a raw control character."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if exit_code == 1:
        assert error_lines(result.stderr) == [], result.stderr
        line = assert_one_line(result.stdout)
        assert line.startswith("NOT TRUSTED: "), line
        return line
    assert result.stdout == "", result.stdout
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].isprintable(), repr(lines[0])
    assert lines[0].startswith("goldsmith: error: "), lines[0]
    return lines[0]
