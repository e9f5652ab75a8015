"""Sizes of the three signed documents and sign/verify times, file key and PKCS#11 key.

Figures, not a test: `python -m tests.bench.attest`. The artifact is the unit
tests' (a 1 MiB qcow2, five results) with N packages (default 400, a small
Debian server); the token is SoftHSM2 initialised in a temporary folder.
With ``--artifact DIR`` (a built, validated template such as
``debian-12-baseline-1.0.0``) each round signs a fresh copy of that real
artifact instead: its files hard-linked, its envelopes left out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "validate"))

from test_manifest import make_artifact, make_key

from validate.keys import load_signing_key
from validate.manifest import sign_artifact
from validate.results import Package, ValidationRun
from validate.verify import verify_artifact

MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def with_packages(artifact: Path, count: int) -> None:
    run = ValidationRun.load(artifact / "validation.json")
    packages = (
        *tuple(
            Package(f"pkg{i}", f"1.{i}-1+deb12u1", "amd64", f"src{i // 3}", f"1.{i}-1")
            for i in range(count)
        ),
        Package("base-files", "12.4+deb12u5", "amd64", "base-files", "12.4+deb12u5"),
    )
    ValidationRun(**{**run.__dict__, "packages": packages}).write(artifact / "validation.json")


def copy_real(source: Path, folder: Path) -> Path:
    """A signable copy of a built template: every file but the signed ones,
    hard-linked (signing reads them and writes only new envelope files)."""
    artifact = folder / source.name
    artifact.mkdir()
    for path in source.iterdir():
        if path.is_file() and not path.name.endswith(".dsse.json") and path.name != "sbom.cdx.json":
            os.link(path, artifact / path.name)
    return artifact


def token(root: Path) -> str:
    import pkcs11
    from pkcs11.util.ec import encode_named_curve_parameters

    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    os.environ["GOLDSMITH_PKCS11_PIN"] = "1234"
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ],
        check=True,
        capture_output=True,
    )
    with pkcs11.lib(MODULE).get_token(token_label="bench").open(user_pin="1234", rw=True) as s:
        params = s.create_domain_parameters(
            pkcs11.KeyType.EC,
            {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        params.generate_keypair(store=True, label="p256")
    return f"pkcs11:token=bench;object=p256?module-path={MODULE}"


def measure(
    label: str, root: Path, key: str | Path, packages: int, rounds: int, real: Path | None
) -> None:
    signs: list[float] = []
    verifies: list[float] = []
    public = root / f"{label}.pub"
    public.write_bytes(load_signing_key(key).public.to_pem())
    for i in range(rounds):
        folder = root / f"{label.split()[0]}-{i}-{len(signs)}"
        folder.mkdir(exist_ok=True)
        if real is None:
            artifact = make_artifact(folder)
            with_packages(artifact, packages)
        else:
            artifact = copy_real(real, folder)
        start = time.perf_counter()
        sign_artifact(artifact, key)
        signs.append(time.perf_counter() - start)
        start = time.perf_counter()
        verify_artifact(artifact, keys=[public])
        verifies.append(time.perf_counter() - start)
    sizes = {
        n: (artifact / n).stat().st_size
        for n in ("manifest.dsse.json", "sbom.dsse.json", "provenance.dsse.json", "sbom.cdx.json")
    }
    print(
        f"{label}: sign {statistics.median(signs) * 1000:.0f} ms, "
        f"verify {statistics.median(verifies) * 1000:.0f} ms (median of {rounds})"
    )
    print("  sizes: " + ", ".join(f"{n} {s} bytes" for n, s in sizes.items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packages", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--artifact", type=Path, help="a real built and validated template")
    args = parser.parse_args()
    real = args.artifact.resolve() if args.artifact else None
    if real is not None:
        packages = len(ValidationRun.load(real / "validation.json").packages)
        print(f"artifact: {real.name} ({packages} packages)")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        measure("file key (ed25519)", root, make_key(root), args.packages, args.rounds, real)
        if shutil.which("softhsm2-util") and os.path.isfile(MODULE):
            (root / "hsm").mkdir()
            uri = token(root / "hsm")
            measure("pkcs11 key (p256, softhsm2)", root, uri, args.packages, args.rounds, real)
        else:
            print("softhsm2 not installed: no PKCS#11 figures")


if __name__ == "__main__":
    main()
