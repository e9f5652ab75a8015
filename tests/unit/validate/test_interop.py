"""The manifest verifies with public tools, not only with goldsmith: openssl over the
PAE for both key types, and ssh-keygen -Y verify over the envelope file.

The PAE and payload are rebuilt here from the envelope JSON by hand, the way a third
party following the DSSE specification would, rather than with goldsmith's helpers.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_manifest import NOW, make_artifact, make_key

from validate.keys import KeyType, load_public_key
from validate.manifest import sign_artifact

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("ssh-keygen") is None,
    reason="openssl and ssh-keygen are needed for interoperability tests",
)


def third_party_pae(envelope: dict[str, str]) -> bytes:
    payload_type = envelope["payloadType"].encode()
    body = base64.b64decode(envelope["payload"])
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(body), body)


def openssl_verify(
    key_type: KeyType, pub: Path, pae: Path, sig: Path
) -> subprocess.CompletedProcess[str]:
    if key_type is KeyType.ed25519:
        cmd = ["openssl", "pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", str(pub)]
        cmd += ["-in", str(pae), "-sigfile", str(sig)]
    else:
        cmd = ["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(sig), str(pae)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("key_type", list(KeyType))
def test_openssl_verifies_the_envelope_signature(tmp_path: Path, key_type: KeyType) -> None:
    artifact = make_artifact(tmp_path)
    key = make_key(tmp_path, key_type)
    pub = key.with_name(key.name + ".pub")
    envelope = json.loads(sign_artifact(artifact, key, now=NOW).read_bytes())

    pae = tmp_path / "pae.bin"
    pae.write_bytes(third_party_pae(envelope))
    sig = tmp_path / "sig.bin"
    sig.write_bytes(base64.b64decode(envelope["signatures"][0]["sig"]))
    result = openssl_verify(key_type, pub, pae, sig)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verified OK" in result.stdout or "Signature Verified Successfully" in result.stdout

    pae.write_bytes(pae.read_bytes().replace(b'"approved":true', b'"approved":fals'))
    assert openssl_verify(key_type, pub, pae, sig).returncode != 0


@pytest.mark.parametrize("key_type", list(KeyType))
def test_keyid_matches_openssl_spki_digest(tmp_path: Path, key_type: KeyType) -> None:
    key = make_key(tmp_path, key_type)
    pub = key.with_name(key.name + ".pub")
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", "-r"], input=der, capture_output=True, check=True
    ).stdout.split()[0]
    assert load_public_key(pub).keyid == digest.decode()


def test_openssl_reads_an_encrypted_key_with_its_passphrase(tmp_path: Path) -> None:
    from validate.keys import generate_key, write_keypair

    write_keypair(generate_key(), tmp_path / "k.pem", passphrase="open sesame")
    ok = subprocess.run(
        ["openssl", "pkey", "-in", str(tmp_path / "k.pem"), "-passin", "pass:open sesame"],
        capture_output=True,
        check=False,
    )
    assert ok.returncode == 0
    bad = subprocess.run(
        ["openssl", "pkey", "-in", str(tmp_path / "k.pem"), "-passin", "pass:nope"],
        capture_output=True,
        check=False,
    )
    assert bad.returncode != 0


def ssh_verify(artifact: Path, allowed: Path, namespace: str) -> subprocess.CompletedProcess[str]:
    manifest = artifact / "manifest.dsse.json"
    with open(manifest, "rb") as data:
        return subprocess.run(
            [
                *("ssh-keygen", "-Y", "verify", "-f", str(allowed)),
                *("-I", "release@example.org", "-n", namespace, "-s", f"{manifest}.sig"),
            ],
            stdin=data,
            capture_output=True,
            text=True,
            check=False,
        )


def test_ssh_keygen_verifies_the_openssh_signature(tmp_path: Path) -> None:
    ssh_key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "release", "-f", str(ssh_key)],
        check=True,
    )
    allowed = tmp_path / "allowed_signers"
    allowed.write_text("release@example.org " + (tmp_path / "id_ed25519.pub").read_text())
    artifact = make_artifact(tmp_path)
    sign_artifact(artifact, make_key(tmp_path), ssh_key=ssh_key, now=NOW)
    assert (
        (artifact / "manifest.dsse.json.sig")
        .read_text()
        .startswith("-----BEGIN SSH SIGNATURE-----")
    )

    result = ssh_verify(artifact, allowed, "goldsmith-manifest")
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Good "goldsmith-manifest" signature for release@example.org' in result.stdout

    # Bound to its namespace, and to the envelope's exact bytes.
    assert ssh_verify(artifact, allowed, "git").returncode != 0
    manifest = artifact / "manifest.dsse.json"
    manifest.write_bytes(manifest.read_bytes() + b" ")
    assert ssh_verify(artifact, allowed, "goldsmith-manifest").returncode != 0


@pytest.mark.parametrize("key_type", list(KeyType))
@pytest.mark.parametrize("name", ["sbom.dsse.json", "provenance.dsse.json"])
def test_openssl_verifies_each_attestation_envelope(
    tmp_path: Path, key_type: KeyType, name: str
) -> None:
    """The SBOM and provenance attestations are DSSE envelopes of their own,
    checked by a third party exactly as the template statement is."""
    artifact = make_artifact(tmp_path)
    key = make_key(tmp_path, key_type)
    pub = key.with_name(key.name + ".pub")
    sign_artifact(artifact, key, now=NOW)
    envelope = json.loads((artifact / name).read_bytes())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    pae = tmp_path / "pae.bin"
    pae.write_bytes(third_party_pae(envelope))
    sig = tmp_path / "sig.bin"
    sig.write_bytes(base64.b64decode(envelope["signatures"][0]["sig"]))
    result = openssl_verify(key_type, pub, pae, sig)
    assert result.returncode == 0, result.stdout + result.stderr
    pae.write_bytes(pae.read_bytes()[:-1] + b" ")
    assert openssl_verify(key_type, pub, pae, sig).returncode != 0


def test_an_ssh_key_held_by_an_agent_signs_through_its_public_half(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ssh-keygen runs in the environment builder.run builds, which passes the
    # agent's socket: without it only a private key file could sign.
    ssh_key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "release", "-f", str(ssh_key)],
        check=True,
    )
    socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if socket.exists():
                break
            time.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
        subprocess.run(["ssh-add", "-q", str(ssh_key)], check=True, capture_output=True)
        ssh_key.unlink()  # only the agent holds the private half now
        allowed = tmp_path / "allowed_signers"
        allowed.write_text("release@example.org " + (tmp_path / "id_ed25519.pub").read_text())
        artifact = make_artifact(tmp_path)
        sign_artifact(artifact, make_key(tmp_path), ssh_key=tmp_path / "id_ed25519.pub", now=NOW)
    finally:
        agent.terminate()
        agent.wait()
    result = ssh_verify(artifact, allowed, "goldsmith-manifest")
    assert result.returncode == 0, result.stdout + result.stderr
