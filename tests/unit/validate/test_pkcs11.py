"""Keys in a token: SoftHSM2, initialised here in a temporary folder, holds an
Ed25519 and a P-256 key made inside it; goldsmith signs with them through
PKCS#11, exports their public halves, and verify trusts what they signed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_manifest import make_artifact, make_key

from builder.cli import cli
from validate.dsse import load_envelope
from validate.pkcs11 import parse_uri

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "4321"


def goldsmith(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    return CliRunner(env=env).invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SoftHSM2 token with keys "ed" (Ed25519) and "p256", made in the token.

    SoftHSM reads its configuration when the module is first initialised in
    this process, so one token serves the module's tests.
    """
    if not (shutil.which("softhsm2-util") and os.path.isfile(MODULE)):
        if os.environ.get("CI"):
            pytest.fail("softhsm2 is not installed (make deps installs it)")
        pytest.skip("softhsm2 is not installed (apt-get install softhsm2)")
    import pkcs11
    from pkcs11.util.ec import encode_named_curve_parameters

    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    config = root / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(config))
        command = ["softhsm2-util", "--init-token", "--free", "--label", "goldsmith"]
        subprocess.run(
            [*command, "--pin", PIN, "--so-pin", "8765"], check=True, capture_output=True
        )
        lib = pkcs11.lib(MODULE)
        with lib.get_token(token_label="goldsmith").open(user_pin=PIN, rw=True) as session:
            # Made in the token, sensitive and never extractable: no one reads the private key.
            private = {pkcs11.Attribute.SENSITIVE: True, pkcs11.Attribute.EXTRACTABLE: False}
            for label, key_type, curve, mechanism in (
                ("p256", pkcs11.KeyType.EC, "secp256r1", None),
                (
                    "ed",
                    pkcs11.KeyType.EC_EDWARDS,
                    "1.3.101.112",
                    pkcs11.Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                ),
            ):
                params = session.create_domain_parameters(
                    key_type,
                    {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters(curve)},
                    local=True,
                )
                params.generate_keypair(
                    store=True, label=label, mechanism=mechanism, private_template=private
                )
        yield f"pkcs11:token=goldsmith;object={{}}?module-path={MODULE}"


@pytest.mark.parametrize(("label", "kind"), [("ed", "ed25519"), ("p256", "p256")])
def test_sign_with_a_token_key_and_verify_with_its_exported_public_key(
    token: str, tmp_path: Path, label: str, kind: str
) -> None:
    uri = token.format(label)
    artifact = make_artifact(tmp_path)
    env = {"TOKEN_PIN": PIN}
    signed = goldsmith("sign", artifact, "--key", uri, "--pin-env", "TOKEN_PIN", env=env)
    assert signed.exit_code == 0, signed.output
    exported = goldsmith(
        "pubkey", uri, "--pin-env", "TOKEN_PIN", "--out", tmp_path / "token.pub", env=env
    )
    assert exported.exit_code == 0, exported.output
    trusted = goldsmith("verify", artifact, "--key", tmp_path / "token.pub", "--json")
    assert trusted.exit_code == 0, trusted.output
    verdict = json.loads(trusted.stdout)
    assert verdict["signers"][0]["type"] == kind
    assert [a["present"] for a in verdict["attestations"]] == [True, True]


def test_a_token_key_is_a_second_approver(token: str, tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    alice = make_key(tmp_path, name="alice")
    assert goldsmith("sign", artifact, "--key", alice).exit_code == 0
    env = {"GOLDSMITH_PKCS11_PIN": PIN}
    assert goldsmith("sign", artifact, "--key", token.format("p256"), env=env).exit_code == 0
    pub = tmp_path / "hsm.pub"
    assert goldsmith("pubkey", token.format("p256"), "--out", pub, env=env).exit_code == 0
    both = goldsmith("verify", artifact, "--key", f"{alice}.pub", "--key", pub, "--threshold", "2")
    assert both.exit_code == 0, both.output
    assert len(load_envelope(artifact / "manifest.dsse.json").signatures) == 2


def test_the_private_key_cannot_be_read_from_the_token(token: str) -> None:
    import pkcs11

    lib = pkcs11.lib(MODULE)
    with lib.get_token(token_label="goldsmith").open(user_pin=PIN) as session:
        for label in ("ed", "p256"):
            key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=label)
            assert key[pkcs11.Attribute.SENSITIVE] is True
            assert key[pkcs11.Attribute.EXTRACTABLE] is False
            with pytest.raises(pkcs11.PKCS11Error):
                key[pkcs11.Attribute.VALUE]


@pytest.mark.parametrize(
    ("uri", "env", "message"),
    [
        ("{ed}", {"GOLDSMITH_PKCS11_PIN": "0000"}, r"--pin-env: the token refused the PIN"),
        ("{ed}", {}, r"GOLDSMITH_PKCS11_PIN is not set"),
        ("pkcs11:token=goldsmith;object=nope?module-path=" + MODULE, None, r"holds no public key"),
        ("pkcs11:token=other;object=ed?module-path=" + MODULE, None, r"no PKCS#11 token"),
        ("pkcs11:token=goldsmith;object=ed", None, r"expected module-path="),
        ("pkcs11:token=goldsmith;bogus=1", None, r"unknown or malformed pkcs11 URI attribute"),
    ],
)
def test_bad_token_input_is_one_line_and_exit_2(
    token: str, tmp_path: Path, uri: str, env: dict[str, str] | None, message: str
) -> None:
    artifact = make_artifact(tmp_path)
    environment: dict[str, str | None] = {"GOLDSMITH_PKCS11_PIN": PIN}
    environment["GOLDSMITH_PKCS11_MODULE"] = None  # CliRunner unsets None
    environment.update(env if env is not None else {})
    if env == {}:
        environment["GOLDSMITH_PKCS11_PIN"] = None
    result = goldsmith(
        "sign", artifact, "--key", uri.format(ed=token.format("ed")), env=environment
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("goldsmith: error")]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert re.search(message, lines[0]), lines[0]
    assert not (artifact / "manifest.dsse.json").exists()


def test_pin_value_in_the_uri_works_but_is_discouraged(
    token: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    artifact = make_artifact(tmp_path)
    uri = f"pkcs11:token=goldsmith;object=ed?module-path={MODULE}&pin-value={PIN}"
    result = goldsmith("sign", artifact, "--key", uri, env={"GOLDSMITH_PKCS11_PIN": None})
    assert result.exit_code == 0, result.output
    assert "prefer --pin-env" in result.stderr


def test_parse_uri() -> None:
    uri = parse_uri("pkcs11:token=My%20Token;id=%01%02;object=k?module-path=/x.so")
    assert (uri.token, uri.key_id, uri.label, uri.module) == ("My Token", b"\x01\x02", "k", "/x.so")
    assert "pin" not in repr(parse_uri("pkcs11:object=k?pin-value=secret"))
