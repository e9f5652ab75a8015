"""Several approvers: a second key adds its signature to the statement the first one
signed, `verify --threshold` counts distinct trusted keys, `signers` lists them."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from test_manifest import NOW, make_artifact, make_key

from builder.cli import cli
from validate.approvals import SignMode, guess_key_type
from validate.dsse import load_envelope
from validate.keys import KeyType, load_private_key, load_public_key
from validate.manifest import SigningError, sign_artifact


def goldsmith(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def pub(key: Path) -> Path:
    return key.with_name(key.name + ".pub")


@pytest.fixture
def two_keys(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An artifact and two keys of different types; nothing signed yet."""
    artifact = make_artifact(tmp_path)
    return artifact, make_key(tmp_path, name="alice"), make_key(tmp_path, KeyType.p256, "bob")


def test_two_keys_sign_in_turn(two_keys: tuple[Path, Path, Path]) -> None:
    artifact, alice, bob = two_keys
    first = goldsmith("sign", artifact, "--key", alice)
    assert first.exit_code == 0, first.output
    payload = load_envelope(artifact / "manifest.dsse.json").payload
    second = goldsmith("sign", artifact, "--key", bob)
    assert second.exit_code == 0, second.output
    envelope = load_envelope(artifact / "manifest.dsse.json")
    # The second approver signed the very bytes the first one did.
    assert envelope.payload == payload
    assert [s.keyid for s in envelope.signatures] == [
        load_public_key(pub(alice)).keyid,
        load_public_key(pub(bob)).keyid,
    ]

    both = goldsmith("verify", artifact, "--key", pub(alice), "--key", pub(bob), "--threshold", "2")
    assert both.exit_code == 0, both.output
    assert "[threshold 2]" in both.stdout
    one = goldsmith("verify", artifact, "--key", pub(alice), "--threshold", "2")
    assert one.exit_code == 1
    assert "1 distinct trusted key(s) signed; the threshold is 2" in one.stdout


def test_the_same_key_twice_is_refused(two_keys: tuple[Path, Path, Path]) -> None:
    artifact, alice, _ = two_keys
    assert goldsmith("sign", artifact, "--key", alice).exit_code == 0
    before = (artifact / "manifest.dsse.json").read_bytes()
    again = goldsmith("sign", artifact, "--key", alice)
    assert again.exit_code == 1
    assert "already signed by key" in again.stderr and "one key approves once" in again.stderr
    assert (artifact / "manifest.dsse.json").read_bytes() == before


def test_a_statement_that_no_longer_describes_the_artifact_is_not_cosigned(
    two_keys: tuple[Path, Path, Path],
) -> None:
    artifact, alice, bob = two_keys
    sign_artifact(artifact, alice, now=NOW, mode=SignMode.add)
    record = json.loads((artifact / "validation.json").read_text())
    record["finished"] = "2026-11-28T00:00:00Z"  # validated again since
    (artifact / "validation.json").write_text(json.dumps(record))
    with pytest.raises(SigningError, match=r"another validation.json") as caught:
        sign_artifact(artifact, bob, now=NOW, mode=SignMode.add)
    assert "--replace" in (caught.value.hint or "")
    # --replace starts over: a new statement with only the new signature.
    sign_artifact(artifact, bob, now=NOW, mode=SignMode.fresh)
    keyids = [s.keyid for s in load_envelope(artifact / "manifest.dsse.json").signatures]
    assert keyids == [load_private_key(bob).keyid]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"valid_for_days": 30}, r"valid for 180 days, not 30"),
        ({"previous": "old"}, r"another previous manifest"),
    ],
)
def test_options_that_would_change_the_statement_are_refused(
    two_keys: tuple[Path, Path, Path], tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    artifact, alice, bob = two_keys
    if "previous" in options:
        old = make_artifact(tmp_path, version="0.9.0")
        options["previous"] = sign_artifact(old, alice, now=NOW)
    sign_artifact(artifact, alice, now=NOW)
    with pytest.raises(SigningError, match=message):
        sign_artifact(artifact, bob, now=NOW, mode=SignMode.add, **options)


def test_an_expired_statement_is_not_cosigned(two_keys: tuple[Path, Path, Path]) -> None:
    artifact, alice, bob = two_keys
    long_ago = NOW - datetime.timedelta(days=40)
    sign_artifact(artifact, alice, now=long_ago, valid_for_days=30)
    with pytest.raises(SigningError, match=r"expired"):
        sign_artifact(artifact, bob, now=NOW, mode=SignMode.add)


def test_renew_keeps_a_current_statement_already_signed(two_keys: tuple[Path, Path, Path]) -> None:
    artifact, alice, _ = two_keys
    sign_artifact(artifact, alice, now=NOW)
    before = (artifact / "manifest.dsse.json").read_bytes()
    later = NOW + datetime.timedelta(minutes=5)
    assert sign_artifact(artifact, alice, now=later) == artifact / "manifest.dsse.json"
    assert (artifact / "manifest.dsse.json").read_bytes() == before


def test_an_added_signature_drops_a_stale_ssh_signature(two_keys: tuple[Path, Path, Path]) -> None:
    artifact, alice, bob = two_keys
    sign_artifact(artifact, alice, now=NOW)
    stale = artifact / "manifest.dsse.json.sig"
    stale.write_text("-----BEGIN SSH SIGNATURE-----\n")
    sign_artifact(artifact, bob, now=NOW, mode=SignMode.add)
    assert not stale.exists()


def test_signers_lists_each_signature(two_keys: tuple[Path, Path, Path], tmp_path: Path) -> None:
    artifact, alice, bob = two_keys
    sign_artifact(artifact, alice, now=NOW)
    sign_artifact(artifact, bob, now=NOW, mode=SignMode.add)
    alice_id, bob_id = load_private_key(alice).keyid, load_private_key(bob).keyid

    listed = goldsmith("signers", artifact, "--key", pub(alice), "--json")
    assert listed.exit_code == 0, listed.output
    rows = [r for r in json.loads(listed.stdout) if r["envelope"] == "manifest.dsse.json"]
    assert rows == [
        {
            "envelope": "manifest.dsse.json",
            "keyid": alice_id,
            "type": "ed25519",
            "typeFrom": "key",
            "verifies": True,
        },
        {
            "envelope": "manifest.dsse.json",
            "keyid": bob_id,
            "type": "p256",
            "typeFrom": "signature",
            "verifies": None,
        },
    ]
    # A key filed under bob's id that is not bob's: listed as not verifying.
    stranger = make_key(tmp_path, KeyType.p256, "mallory")
    text = goldsmith("signers", artifact, "--key", pub(alice), "--key", pub(stranger))
    assert text.exit_code == 0
    lines = [line for line in text.stdout.splitlines() if line.startswith("manifest.dsse.json")]
    assert alice_id in lines[0] and lines[0].endswith("verifies")
    assert bob_id in lines[1] and lines[1].endswith("no --key for it")


def test_signers_of_an_unsigned_artifact_is_bad_input(tmp_path: Path) -> None:
    result = goldsmith("signers", make_artifact(tmp_path))
    assert result.exit_code == 2
    assert "the artifact is unsigned" in result.stderr


def test_guess_key_type_from_signature_shape(tmp_path: Path) -> None:
    ed = load_private_key(make_key(tmp_path, KeyType.ed25519, "ed"))
    p256 = load_private_key(make_key(tmp_path, KeyType.p256, "p"))
    assert guess_key_type(ed.sign(b"x")) == "ed25519"
    assert guess_key_type(p256.sign(b"x")) == "p256"
    assert guess_key_type(b"\x01\x02") == "unknown"
