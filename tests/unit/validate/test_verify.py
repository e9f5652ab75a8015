"""goldsmith verify: a trusted artifact passes, and every tampering is refused with its
own reason."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_manifest import (
    GOOD_RESULTS,
    NOW,
    make_artifact,
    make_key,
    make_qcow2,
    read_statement,
    stamp_unchecked,
    write_records,
)

from builder.cli import cli
from builder.errors import InputError
from hardening.results import CheckResult, Status
from validate.claims import Claims, VerificationError
from validate.dsse import PAYLOAD_TYPE_IN_TOTO, Envelope, Signature, load_envelope, sign_envelope
from validate.keys import KeyType, PrivateKey, load_private_key, load_public_key
from validate.manifest import encode_statement, sign_artifact
from validate.policy import Pins, Policy
from validate.trust_checks import AllOf, Evidence
from validate.verify import Verdict, verify_artifact

LATER = NOW + datetime.timedelta(days=1)


@dataclasses.dataclass
class Signed:
    artifact: Path
    key: Path  # private key
    pub: Path

    @property
    def manifest(self) -> Path:
        return self.artifact / "manifest.dsse.json"

    @property
    def image(self) -> Path:
        return self.artifact / "disk.qcow2"

    def verify(self, **kwargs: Any) -> Verdict:
        kwargs.setdefault("keys", [self.pub])
        kwargs.setdefault("now", LATER)
        return verify_artifact(self.artifact, **kwargs)


def pub(key: Path) -> Path:
    return key.with_name(key.name + ".pub")


@pytest.fixture
def signed(tmp_path: Path) -> Signed:
    artifact = make_artifact(tmp_path)
    key = make_key(tmp_path)
    sign_artifact(artifact, key, now=NOW)
    return Signed(artifact, key, pub(key))


def load_envelope_json(manifest: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(manifest.read_bytes())
    return doc


def rewrite_envelope(manifest: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(manifest.read_bytes())
    edit(doc)
    manifest.write_text(json.dumps(doc))


def resign(signed: Signed, edit: Callable[[dict[str, Any]], None], *keys: PrivateKey) -> None:
    """Edit the statement and sign it again with trusted key(s): valid signature, odd content."""
    statement = read_statement(signed.manifest)
    edit(statement)
    signers = keys or (load_private_key(signed.key),)
    envelope = sign_envelope(PAYLOAD_TYPE_IN_TOTO, encode_statement(statement), list(signers))
    signed.manifest.write_bytes(envelope.to_json())


# --- trusted --------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(KeyType))
def test_round_trip_trusted(tmp_path: Path, key_type: KeyType) -> None:
    artifact = make_artifact(tmp_path)
    key = make_key(tmp_path, key_type)
    sign_artifact(artifact, key, now=NOW)
    verdict = verify_artifact(artifact, keys=[pub(key)], now=LATER)
    assert [k.keyid for k in verdict.signers] == [load_public_key(pub(key)).keyid]
    assert verdict.claims.template_name == "debian-12-baseline"
    assert verdict.claims.counts["passed"] == 3
    text = verdict.describe()
    assert text.startswith("TRUSTED: debian-12-baseline 1.0.0")
    assert verdict.signers[0].keyid in text
    assert "baseline 1" in text and "3 passed" in text and "1 waived" in text


def test_verify_by_image_and_manifest_paths(signed: Signed) -> None:
    verdict = verify_artifact(
        image=signed.image, manifest=signed.manifest, keys=[signed.pub], now=LATER
    )
    assert verdict.image == signed.image


def test_cli_trusted_human_and_json(signed: Signed) -> None:
    runner = CliRunner()
    args = ["verify", str(signed.artifact), "--key", str(signed.pub)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    keyid = load_public_key(signed.pub).keyid
    assert "TRUSTED: debian-12-baseline 1.0.0" in result.stdout
    assert keyid in result.stdout and "profile:   baseline 1" in result.stdout
    assert "3 passed, 0 failed, 0 error, 1 waived, 1 skipped" in result.stdout

    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["trusted"] is True
    assert verdict["signers"] == [{"keyid": keyid, "type": "ed25519"}]
    assert verdict["template"] == {"name": "debian-12-baseline", "version": "1.0.0"}
    assert verdict["results"]["counts"]["waived"] == 1


def test_cli_image_and_manifest_form(signed: Signed) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "verify",
            "--image",
            str(signed.image),
            "--manifest",
            str(signed.manifest),
            "--key",
            str(signed.pub),
        ],
    )
    assert result.exit_code == 0, result.output


def test_cli_needs_a_folder_or_both_paths(signed: Signed) -> None:
    result = CliRunner().invoke(cli, ["verify", "--image", str(signed.image), "--key", "k"])
    assert result.exit_code == 2
    assert "both --image and --manifest" in result.output


def test_two_distinct_keys_meet_a_threshold_of_two(signed: Signed, tmp_path: Path) -> None:
    second = make_key(tmp_path, KeyType.p256, "second")
    sign_artifact(signed.artifact, second, now=NOW, mode="add")  # the manifest and attestations
    verdict = signed.verify(keys=[signed.pub, pub(second)], threshold=2)
    assert len(verdict.signers) == 2


# --- the tamper suite: each refusal names its own reason -------------------------------


def test_one_byte_of_the_image_changed(signed: Signed) -> None:
    with open(signed.image, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0x01]))
    with pytest.raises(VerificationError, match=r"sha256 [0-9a-f]+ does not match the manifest"):
        signed.verify()


def test_a_predicate_field_edited_under_the_old_signature(signed: Signed) -> None:
    def edit(doc: dict[str, Any]) -> None:
        statement = json.loads(base64.b64decode(doc["payload"]))
        statement["predicate"]["results"]["counts"]["failed"] = 0
        statement["predicate"]["profile"]["id"] = "strict"
        doc["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()

    rewrite_envelope(signed.manifest, edit)
    with pytest.raises(VerificationError, match=r"does not verify; the envelope was altered"):
        signed.verify()


def test_payload_type_changed(signed: Signed) -> None:
    rewrite_envelope(signed.manifest, lambda d: d.update(payloadType="application/json"))
    with pytest.raises(VerificationError, match=r"payloadType is 'application/json'"):
        signed.verify()


def test_wrong_key(signed: Signed, tmp_path: Path) -> None:
    other = make_key(tmp_path, name="other")
    with pytest.raises(VerificationError, match=r"not signed by any trusted key"):
        signed.verify(keys=[pub(other)])


def test_the_same_key_listed_twice_counts_once(signed: Signed) -> None:
    with pytest.raises(VerificationError, match=r"1 distinct trusted key.* threshold is 2"):
        signed.verify(keys=[signed.pub, signed.pub], threshold=2)


def test_two_signatures_by_one_key_are_refused(signed: Signed, tmp_path: Path) -> None:
    # One key, one signature: a repeated keyid must not make one signer look like two.
    key = load_private_key(signed.key)
    resign(signed, lambda s: None, key, key)
    other = make_key(tmp_path, name="other")
    with pytest.raises(VerificationError, match=r"signatures\[1\].keyid: duplicate keyid"):
        signed.verify(keys=[signed.pub, pub(other)], threshold=2)


def test_two_signatures_by_one_key_count_once(signed: Signed, tmp_path: Path) -> None:
    # The same key under two keyids (one of them a lie) still counts once.
    key = load_private_key(signed.key)
    resign(signed, lambda s: None, key, key)
    envelope = load_envelope_json(signed.manifest)
    envelope["signatures"][1]["keyid"] = "ab" * 32
    signed.manifest.write_text(json.dumps(envelope))
    other = make_key(tmp_path, name="other")
    with pytest.raises(VerificationError, match=r"1 distinct trusted key.* threshold is 2"):
        signed.verify(keys=[signed.pub, pub(other)], threshold=2)


def test_expired_manifest(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    key = make_key(tmp_path)
    long_ago = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    sign_artifact(artifact, key, now=long_ago, valid_for_days=30)
    with pytest.raises(VerificationError, match=r"expired at 2020-01-31T00:00:00Z"):
        verify_artifact(artifact, keys=[pub(key)])  # the real clock


def test_approval_from_the_future(signed: Signed) -> None:
    with pytest.raises(VerificationError, match=r"in the future"):
        signed.verify(now=NOW - datetime.timedelta(hours=1))


def test_revoked_key(signed: Signed) -> None:
    keyid = load_public_key(signed.pub).keyid
    with pytest.raises(VerificationError, match=rf"signed by revoked key.*{keyid}"):
        signed.verify(policy=Policy(revoked_keys=frozenset({keyid})))


def test_a_qcow2_with_a_backing_file(tmp_path: Path) -> None:
    # Signed without sign's refusals, digests and all: verify stands on its own.
    make_qcow2(tmp_path / "base.qcow2")
    artifact = make_artifact(tmp_path, qemu_options=["-b", "../base.qcow2", "-F", "qcow2"])
    key = make_key(tmp_path)
    stamp_unchecked(artifact, load_private_key(key))
    with pytest.raises(VerificationError, match=r"names a backing file \('../base.qcow2'\)"):
        verify_artifact(artifact, keys=[pub(key)], now=LATER)


def test_a_qcow2_with_an_external_data_file(tmp_path: Path) -> None:
    options = ["-o", "data_file=x.raw,data_file_raw=on"]
    artifact = make_artifact(tmp_path, qemu_options=options)
    key = make_key(tmp_path)
    stamp_unchecked(artifact, load_private_key(key))
    with pytest.raises(VerificationError, match=r"names an external data file \('x.raw'\)"):
        verify_artifact(artifact, keys=[pub(key)], now=LATER)


def test_truncated_envelope(signed: Signed) -> None:
    # What a manifest says is not trusted, malformed or not: exit 1, never a traceback.
    data = signed.manifest.read_bytes()
    signed.manifest.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        VerificationError, match=r"manifest.dsse.json: ends before .*\(truncated\?\)"
    ) as exc:
        signed.verify()
    assert exc.value.exit_code == 1


def test_non_json_envelope(signed: Signed) -> None:
    signed.manifest.write_bytes(b"-----BEGIN SSH SIGNATURE-----\n")
    with pytest.raises(VerificationError, match=r"manifest.dsse.json: is not JSON") as exc:
        signed.verify()
    assert exc.value.exit_code == 1


def test_a_signature_over_a_different_image(signed: Signed, tmp_path: Path) -> None:
    # Another template, properly signed by the same key: its manifest must not vouch for ours.
    other = make_artifact(tmp_path, version="2.0.0", size="2M")
    sign_artifact(other, signed.key, now=NOW)
    with pytest.raises(VerificationError, match=r"virtual size 1048576 differs"):
        verify_artifact(
            image=signed.image,
            manifest=other / "manifest.dsse.json",
            keys=[signed.pub],
            now=LATER,
        )


def test_a_different_image_of_the_same_size(signed: Signed, tmp_path: Path) -> None:
    other = make_qcow2(tmp_path / "other.qcow2", "1M", "-o", "cluster_size=4096")
    with pytest.raises(VerificationError, match=r"does not match the manifest subject"):
        verify_artifact(image=other, manifest=signed.manifest, keys=[signed.pub], now=LATER)


def test_statement_type_changed_and_resigned(signed: Signed) -> None:
    resign(signed, lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"))
    with pytest.raises(VerificationError, match=r"statement _type is"):
        signed.verify()


def test_predicate_type_changed_and_resigned(signed: Signed) -> None:
    resign(signed, lambda s: s.update(predicateType="https://slsa.dev/provenance/v1"))
    with pytest.raises(VerificationError, match=r"predicateType is 'https://slsa.dev"):
        signed.verify()


def test_unapproved_results_are_refused_even_when_signed(tmp_path: Path) -> None:
    failed = CheckResult("SSH-02", "No passwords", "ssh", Status.failed, "no", "yes", "high")
    artifact = make_artifact(tmp_path, (*GOOD_RESULTS, failed))
    key = make_key(tmp_path)
    stamp_unchecked(artifact, load_private_key(key))
    with pytest.raises(VerificationError, match=r"not approved \(1 control\(s\) not passed"):
        verify_artifact(artifact, keys=[pub(key)], now=LATER)


def test_approved_flag_is_recounted_from_the_controls(signed: Signed) -> None:
    def edit(statement: dict[str, Any]) -> None:
        results = statement["predicate"]["results"]
        results["controls"][0]["status"] = "failed"
        results["counts"].update(passed=2, failed=1)  # consistent counts, approved still true

    resign(signed, edit)
    with pytest.raises(VerificationError, match=r"results are not approved"):
        signed.verify()


def test_counts_that_disagree_with_the_controls(signed: Signed) -> None:
    def edit(statement: dict[str, Any]) -> None:
        statement["predicate"]["results"]["controls"][0]["status"] = "failed"

    resign(signed, edit)
    with pytest.raises(VerificationError, match=r"counts disagree with the listed controls"):
        signed.verify()


# --- the policy -----------------------------------------------------------------------


def write_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_policy_that_passes(signed: Signed, tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path,
        "required_profile: baseline\nrequired_result: approved\nmax_age_days: 30\n"
        "required_controls: [SSH-01, HYG-001]\nrevoked_keys: ['" + "ab" * 32 + "']\n",
    )
    assert signed.verify(policy=policy).claims.profile_id == "baseline"


def test_policy_required_profile(signed: Signed, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, "required_profile: cis-level-2\n")
    with pytest.raises(
        VerificationError, match=r"the policy \(required_profile\) requires 'cis-level-2'"
    ):
        signed.verify(policy=policy)


def test_policy_max_age(signed: Signed, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, "max_age_days: 7\n")
    with pytest.raises(VerificationError, match=r"approved 10 days ago.*max_age_days"):
        signed.verify(policy=policy, now=NOW + datetime.timedelta(days=10))


def test_policy_required_control_waived(signed: Signed, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, "required_controls: [SSH-01, KMOD-03]\n")
    with pytest.raises(VerificationError, match=r"required control KMOD-03 is waived"):
        signed.verify(policy=policy)


def test_policy_required_control_absent(signed: Signed) -> None:
    with pytest.raises(VerificationError, match=r"AUD-9 is absent from the results"):
        signed.verify(policy=Policy(required_controls=("AUD-9",)))


def test_policy_threshold_is_the_stricter_of_the_two(signed: Signed, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, "threshold: 2\n")
    with pytest.raises(VerificationError, match=r"threshold is 2"):
        signed.verify(policy=policy, threshold=1)


def test_empty_policy_file_keeps_the_mandatory_checks(signed: Signed, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, "")
    signed.verify(policy=policy)
    with pytest.raises(VerificationError, match=r"expired"):
        signed.verify(policy=policy, now=NOW + datetime.timedelta(days=400))


def test_all_of_nothing_refuses(signed: Signed) -> None:
    claims_check: list[Claims] = []

    def spy(evidence: Evidence) -> None:
        claims_check.append(evidence.claims)

    evidence = Evidence(
        image=signed.image,
        manifest=signed.manifest,
        claims=signed.verify().claims,
        signers=frozenset(),
        now=LATER,
    )
    with pytest.raises(VerificationError, match=r"empty policy trusts nothing"):
        AllOf(())(evidence)
    AllOf((spy,))(evidence)
    assert len(claims_check) == 1


def test_every_policy_check_is_in_the_default_chain() -> None:
    chain = Policy().checks(1).checks
    names = [getattr(c, "__name__", type(c).__name__) for c in chain]
    assert names == [
        "SignedByThreshold",
        "not_expired",
        "results_approved",
        "image_self_contained",
        "image_digests_match",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_age_day: 3\n", "max_age_day: unknown policy key; did you mean 'max_age_days'?"),
        ("required_result: failed\n", "required_result: expected 'approved'"),
        ("revoked_keys: [abc]\n", "revoked_keys: expected a list of keyids"),
        ("threshold: 0\n", "threshold: expected an integer from 1 to 16"),
        ("threshold: 17\n", "threshold: expected an integer from 1 to 16"),
        ("- a list\n", "expected a mapping"),
        ("a: [\n", "expected YAML"),
    ],
)
def test_bad_policy_is_input_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("?", r"\?").replace("[", r"\[")):
        Policy.load(write_policy(tmp_path, text))


# --- exit codes and messages at the command line --------------------------------------


def run_verify(signed: Signed, *extra: str) -> Any:
    args = ["verify", str(signed.artifact), *extra]
    if "--key" not in extra:
        args += ["--key", str(signed.pub)]
    return CliRunner().invoke(cli, args)


def test_cli_not_trusted_is_exit_1_with_the_reason(signed: Signed, tmp_path: Path) -> None:
    other = make_key(tmp_path, name="other")
    result = run_verify(signed, "--key", str(pub(other)))
    assert result.exit_code == 1
    assert result.stdout.startswith("NOT TRUSTED: ")
    assert "not signed by any trusted key" in result.stdout

    result = run_verify(signed, "--key", str(pub(other)), "--json")
    assert result.exit_code == 1
    verdict = json.loads(result.stdout)
    assert verdict["trusted"] is False and verdict["exit_code"] == 1
    assert "not signed by any trusted key" in verdict["reason"]


def test_cli_missing_manifest_is_exit_2(signed: Signed) -> None:
    signed.manifest.unlink()
    result = run_verify(signed)
    assert result.exit_code == 2
    assert "manifest.dsse.json: not found; expected a DSSE envelope file" in result.stderr
    assert "Traceback" not in result.output


def test_cli_unreadable_key_is_exit_2(signed: Signed) -> None:
    result = run_verify(signed, "--key", str(signed.key))  # the private key, not its .pub
    assert result.exit_code == 2
    assert "expected a PEM public key" in result.stderr
    assert "its .pub is needed" in result.stderr


def test_cli_missing_key_file_is_exit_2(signed: Signed, tmp_path: Path) -> None:
    result = run_verify(signed, "--key", str(tmp_path / "nope.pub"))
    assert result.exit_code == 2
    assert "nope.pub: key file not found" in result.stderr


def test_cli_truncated_envelope_json_verdict_is_exit_1(signed: Signed) -> None:
    signed.manifest.write_bytes(signed.manifest.read_bytes()[:100])
    result = run_verify(signed, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["trusted"] is False
    assert "truncated" in json.loads(result.stdout)["reason"]


def test_cli_threshold_and_policy_options(signed: Signed, tmp_path: Path) -> None:
    result = run_verify(signed, "--threshold", "2")
    assert result.exit_code == 1 and "threshold is 2" in result.stdout
    policy = write_policy(tmp_path, "required_profile: other\n")
    result = run_verify(signed, "--policy", str(policy))
    assert result.exit_code == 1
    assert "the policy (required_profile) requires 'other'" in result.stdout


def test_records_rewritten_without_resigning_do_not_matter(signed: Signed) -> None:
    # verify trusts only the signed statement and the image, never the records beside them.
    write_records(signed.artifact, ())
    assert signed.verify().claims.approved


def test_unsigned_envelope_signature_bytes_are_checked(signed: Signed) -> None:
    envelope = load_envelope(signed.manifest)
    forged = Envelope(
        envelope.payload_type,
        envelope.payload,
        (Signature(envelope.signatures[0].keyid, bytes(64)),),
    )
    signed.manifest.write_bytes(forged.to_json())
    with pytest.raises(VerificationError, match=r"does not verify"):
        signed.verify()


# --- pins: the expected template, not merely a signed one -------------------------------


@pytest.fixture
def old_and_new(tmp_path: Path) -> tuple[Signed, Signed]:
    """Two validly signed releases of one template by one key: 1.2.0, then 1.10.0."""
    key = make_key(tmp_path)
    releases = []
    for version in ("1.2.0", "1.10.0"):
        artifact = make_artifact(tmp_path, version=version)
        sign_artifact(artifact, key, now=NOW)
        releases.append(Signed(artifact, key, pub(key)))
    return releases[0], releases[1]


def test_pins_that_hold(old_and_new: tuple[Signed, Signed]) -> None:
    _, new = old_and_new
    pins = Pins(
        name="debian-12-baseline",
        version="1.10.0",
        min_version="1.9",
        profile="baseline",
        profile_digest="22" * 32,  # the bare hex form is accepted too
    )
    assert new.verify(pins=pins).claims.template_version == "1.10.0"


def test_rollback_to_an_older_signed_release_is_refused(old_and_new: tuple[Signed, Signed]) -> None:
    old, _ = old_and_new
    old.verify()  # without pins an older signed template passes: that is the hole
    with pytest.raises(
        VerificationError,
        match=r"version '1.2.0' is lower than '1.10.0', the least --min-version accepts",
    ) as caught:
        old.verify(pins=Pins(min_version="1.10.0"))
    assert caught.value.exit_code == 1


@pytest.mark.parametrize(
    ("signed_version", "minimum", "passes"),
    [
        ("1.10.0", "1.9.0", True),  # numbers, not strings: 10 > 9
        ("1.2", "1.2.0", True),  # trailing zeros do not count
        ("1.2.0", "1.2.1", False),
        ("2.0.0", "10.0", False),
        ("1.0.0", "1.0.0", True),
    ],
)
def test_min_version_compares_numerically(
    tmp_path: Path, signed_version: str, minimum: str, passes: bool
) -> None:
    artifact = make_artifact(tmp_path, version=signed_version)
    key = make_key(tmp_path)
    sign_artifact(artifact, key, now=NOW)
    signed = Signed(artifact, key, pub(key))
    if passes:
        signed.verify(pins=Pins(min_version=minimum))
    else:
        with pytest.raises(VerificationError, match=r"is lower than"):
            signed.verify(pins=Pins(min_version=minimum))


def test_a_version_that_cannot_be_ordered_is_refused_under_min_version(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path, version="2.0.0-rc1")
    key = make_key(tmp_path)
    sign_artifact(artifact, key, now=NOW)
    signed = Signed(artifact, key, pub(key))
    with pytest.raises(VerificationError, match=r"'2.0.0-rc1' is not numeric dotted"):
        signed.verify(pins=Pins(min_version="1.0"))


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        (Pins(name="debian-12-web"), r"the template is 'debian-12-baseline'; --name requires"),
        (Pins(version="1.10.0"), r"version is '1.2.0'; --version requires '1.10.0'"),
        (Pins(profile="cis-level1-server"), r"profile 'baseline'; --profile requires 'cis-level1"),
        (
            Pins(profile_digest="sha256:" + "33" * 32),
            r"profile digest sha256:2222.*; --profile-digest requires sha256:3333",
        ),
    ],
)
def test_each_pin_names_what_was_expected(
    old_and_new: tuple[Signed, Signed], pins: Pins, message: str
) -> None:
    old, _ = old_and_new
    with pytest.raises(VerificationError, match=message):
        old.verify(pins=pins)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("required_name: debian-12-web\n", r"the policy \(required_name\) requires"),
        ("required_version: '1.10.0'\n", r"the policy \(required_version\) requires"),
        ("min_version: '1.10'\n", r"the least the policy \(min_version\) accepts"),
        (
            "required_profile_digest: sha256:" + "33" * 32 + "\n",
            r"the policy \(required_profile_digest\) requires sha256:3333",
        ),
    ],
)
def test_the_same_pins_in_the_policy(
    old_and_new: tuple[Signed, Signed], tmp_path: Path, text: str, message: str
) -> None:
    old, new = old_and_new
    policy = write_policy(tmp_path, text)
    with pytest.raises(VerificationError, match=message):
        old.verify(policy=policy)
    if "name" not in text and "digest" not in text:
        new.verify(policy=policy)


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        (Pins(min_version="1.x"), r"--min-version: expected a numeric dotted version"),
        (Pins(min_version="v1"), r"--min-version: expected a numeric dotted version"),
        (Pins(profile_digest="md5:abc"), r"--profile-digest: expected sha256:<64 hex digits>"),
        (Pins(name=""), r"--name: expected a non-empty string"),
    ],
)
def test_bad_pins_are_input_errors(signed: Signed, pins: Pins, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        signed.verify(pins=pins)
    assert caught.value.exit_code == 2


def test_cli_pins(old_and_new: tuple[Signed, Signed]) -> None:
    old, new = old_and_new
    ok = run_verify(
        new, "--name", "debian-12-baseline", "--min-version", "1.10", "--profile", "baseline"
    )
    assert ok.exit_code == 0, ok.output
    flags = ["--version", "1.10.0", "--profile-digest", "sha256:" + "22" * 32]
    assert run_verify(new, *flags).exit_code == 0
    result = run_verify(old, "--name", "debian-12-baseline", "--min-version", "1.10")
    assert result.exit_code == 1
    assert result.stdout.count("\n") == 1
    assert result.stdout.startswith("NOT TRUSTED: ") and "--min-version" in result.stdout
    result = run_verify(old, "--min-version", "one")
    assert result.exit_code == 2 and "--min-version" in result.stderr


# --- bad numbers in the policy -----------------------------------------------------------


@pytest.mark.parametrize(
    "value", [".inf", "-.inf", ".nan", "1.0e12", "0", "-3", "true", "'7'", "1e12", "3651"]
)
def test_max_age_days_must_be_a_sane_number(tmp_path: Path, value: str) -> None:
    with pytest.raises(InputError, match=r"policy.yaml: (max_age_days|expected YAML)") as caught:
        Policy.load(write_policy(tmp_path, f"max_age_days: {value}\n"))
    assert "\n" not in caught.value.diagnostics()


@pytest.mark.parametrize(
    "text",
    [
        "revoked_keys: ['" + "ab" * 32 + "']\nrevoked_keys: []\n",
        "threshold: 3\nthreshold: 1\n",
        "required_profile: cis\nrequired_profile: baseline\n",
    ],
)
def test_duplicate_policy_keys_are_refused_not_merged(tmp_path: Path, text: str) -> None:
    with pytest.raises(InputError, match=r"policy.yaml: expected YAML .*duplicate key"):
        Policy.load(write_policy(tmp_path, text))


# --- terminal escapes from the manifest ---------------------------------------------------


def test_describe_escapes_what_the_manifest_says(signed: Signed) -> None:
    def edit(statement: dict[str, Any]) -> None:
        statement["predicate"]["template"]["version"] = "1.0.0\r\x1b[1A\x1b[2KTRUSTED: evil"
        statement["predicate"]["profile"]["version"] = "\u202eevil"

    resign(signed, edit)
    text = signed.verify().describe()
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert "1.0.0\\x0d\\x1b[1A" in text and "\\u202eevil" in text
    # Six lines (the last names the attestations): the real TRUSTED line and the quote.
    assert text.count("\n") == 6 and text.count("TRUSTED") == 2
