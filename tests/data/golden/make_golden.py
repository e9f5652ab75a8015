"""Writes the golden records in this folder: today's build.json, validation.json
and signed manifest (with its SBOM and provenance), as goldsmith writes them.

Run from the repository root:

    .venv/bin/python -m tests.data.golden.make_golden --from ARTIFACT
    .venv/bin/python -m tests.data.golden.make_golden

With ``--from``, build.json and validation.json are taken from ARTIFACT, a
folder a real ``goldsmith build`` and ``validate`` wrote, and made fit to keep:

- host paths scrubbed: the spec is named by its repository path
  (templates/<file>), the profile by its name when it is a shipped one;
- the image retargeted to disk.qcow2 here (a 64 KiB qcow2 from
  ``qemu-img create``): both records' digests and sizes become its own, so the
  manifest verifies in full against it;
- the package list cut to a few packages (epochs, binNMUs, source packages of
  another name are among them), to keep the files small.

Then, and without ``--from`` (after a deliberate change to a format), the
records here are signed as ``goldsmith sign`` signs them, by a THROWAWAY key
derived from the published seed below: anyone can sign with it, which is the
point. Its public half is golden.pub. Ed25519 is deterministic and the clock
is fixed, so rerunning this gives the same bytes while the formats stay the
same; tests/unit/test_golden.py reads the committed files, never this script.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from validate.keys import PrivateKey, write_keypair
from validate.manifest import sign_artifact

HERE = Path(__file__).resolve().parent
FOLDER = HERE / "debian-12-baseline-1.0.0"
IMAGE = FOLDER / "disk.qcow2"
# A published seed: this key protects nothing.
GOLDEN_KEY = PrivateKey(
    ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"goldsmith golden records: throwaway test key").digest()
    )
)
APPROVED = datetime.datetime(2026, 12, 1, 9, 0, 0, tzinfo=datetime.UTC)
KEPT_PACKAGES = frozenset(
    {
        "base-files",
        "cloud-init",
        "libc6",
        "libssl3",
        "linux-image-cloud-amd64",
        "openssh-server",
        "openssl",
        "python3",
        "sudo",
        "systemd",
        "tzdata",
    }
)
SIGNED = ("manifest.dsse.json", "sbom.cdx.json", "sbom.dsse.json", "provenance.dsse.json")


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def import_records(artifact: Path) -> None:
    """build.json and validation.json from a real artifact, scrubbed and retargeted."""
    data = IMAGE.read_bytes()
    sha256, sha512 = hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest()
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(IMAGE)],
        capture_output=True,
        check=True,
    )
    virtual_size = json.loads(info.stdout)["virtual-size"]

    build = json.loads((artifact / "build.json").read_text(encoding="utf-8"))
    build["spec"]["path"] = "templates/" + Path(build["spec"]["path"]).name
    profile = Path(build["profile"]["source"])
    if profile.parent.name == "profiles" and profile.parent.parent.name == "data":
        build["profile"]["source"] = profile.stem
    else:
        build["profile"]["source"] = profile.name
    build["image"].update(sha256=sha256, sha512=sha512, virtual_size=virtual_size, size=len(data))
    for output in build.get("outputs", []):
        output.update(sha256=sha256, sha512=sha512, size=len(data))
    write_json(FOLDER / "build.json", build)

    validation = json.loads((artifact / "validation.json").read_text(encoding="utf-8"))
    validation["image"].update(sha256=sha256, sha512=sha512)
    validation["packages"] = [p for p in validation["packages"] if p["name"] in KEPT_PACKAGES]
    write_json(FOLDER / "validation.json", validation)


def sign() -> None:
    """Sign the records here as ``goldsmith sign`` does, by the golden key."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        key, public = write_keypair(GOLDEN_KEY, work / "golden.pem", passphrase=None)
        artifact = work / FOLDER.name
        artifact.mkdir()
        for name in ("disk.qcow2", "build.json", "validation.json"):
            shutil.copyfile(FOLDER / name, artifact / name)
        sign_artifact(artifact, key, now=APPROVED, mode="fresh")
        for name in SIGNED:
            shutil.copyfile(artifact / name, FOLDER / name)
        shutil.copyfile(public, HERE / "golden.pub")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="artifact", type=Path, help="a real artifact folder")
    args = parser.parse_args()
    if args.artifact is not None:
        import_records(args.artifact)
    sign()


if __name__ == "__main__":
    main()
