"""Bad input to verify, sign, report and history: exit 2 and one line, never a traceback.

Policy files, keys, manifests, records and image paths that are missing,
folders, FIFOs, devices, too large, not UTF-8, ambiguous (duplicate keys),
hostile (deep nesting, huge integers, lone surrogates, YAML aliases) or just
wrong. Each must end in exit code 2 with exactly one error line on stderr
naming the file (progress lines "[  0.1s] ..." and an optional "  hint:" line
aside), and must not hang: a FIFO opened for reading would block forever
without a writer, and /dev/zero never ends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from validate.keys import generate_key, write_keypair

from .validate_helpers import Signed, assert_not_trusted, goldsmith, make_artifact, make_key, sign

# Makes a bad file under the test's folder and returns its path (or a device's).
Maker = Callable[[Path], Path]


def fifo(tmp: Path) -> Path:
    path = tmp / "bad.fifo"
    os.mkfifo(path)
    return path


def folder(tmp: Path) -> Path:
    path = tmp / "a-folder"
    path.mkdir()
    return path


def missing(tmp: Path) -> Path:
    return tmp / "nope"


def dev_zero(_tmp: Path) -> Path:
    return Path("/dev/zero")


def dev_zero_link(tmp: Path) -> Path:
    link = tmp / "zero-link"
    link.symlink_to("/dev/zero")
    return link


def content(data: bytes | str, name: str = "bad") -> Maker:
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    return make


HOSTILE_FILES: dict[str, Maker] = {
    "missing": missing,
    "a folder": folder,
    "a FIFO": fifo,
    "/dev/zero": dev_zero,
    "a link to /dev/zero": dev_zero_link,
}

BAD_POLICIES: dict[str, Maker] = {
    **HOSTILE_FILES,
    "not UTF-8": content(b"threshold: \xff\xfe\n"),
    "revoked_keys twice": content("revoked_keys: ['" + "ab" * 32 + "']\nrevoked_keys: []\n"),
    "threshold twice": content("threshold: 3\nthreshold: 1\n"),
    "max_age_days .inf": content("max_age_days: .inf\n"),
    "max_age_days .nan": content("max_age_days: .nan\n"),
    "max_age_days 1.0e12": content("max_age_days: 1.0e12\n"),
    "max_age_days a string": content("max_age_days: 1e12\n"),
    "threshold of 5000 digits": content("threshold: 1" + "0" * 5000 + "\n"),
    "threshold 17": content("threshold: 17\n"),
    "an unknown key": content("max_age_day: 3\n"),
    "a list": content("- required_profile: baseline\n"),
    "nested 1000 deep": content("x: " + "[" * 1000 + "]" * 1000 + "\n"),
    "a billion laughs": content(
        'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
            for i in range(8)
        )
    ),
    "a merge key": content("base: &b {threshold: 1}\nother:\n  <<: *b\n"),
    "a python tag": content("threshold: !!python/object/apply:os.system ['true']\n"),
    "a bad min_version": content("min_version: '1.x'\n"),
    "a bad profile digest": content("required_profile_digest: md5:abc\n"),
    "required_result failed": content("required_result: failed\n"),
    "over a megabyte": content("#" * (1 << 20) + "\n"),
    "two documents": content("threshold: 1\n---\nthreshold: 2\n"),
}


@pytest.fixture
def signed(tmp_path: Path) -> Signed:
    return sign(tmp_path)


@pytest.mark.parametrize("name", list(BAD_POLICIES))
def test_verify_with_a_bad_policy(signed: Signed, tmp_path: Path, name: str) -> None:
    policy = BAD_POLICIES[name](tmp_path)
    result = goldsmith("verify", signed.artifact, "--key", signed.pub, "--policy", policy)
    line = assert_not_trusted(result, exit_code=2)
    assert str(policy) in line


def rsa_public(tmp: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp / "rsa.pub"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def private_instead_of_public(tmp: Path) -> Path:
    return make_key(tmp, "private")


BAD_PUBLIC_KEYS: dict[str, Maker] = {
    **HOSTILE_FILES,
    "text": content("not a key\n"),
    "not UTF-8": content(bytes(range(256))),
    "empty": content(b""),
    "over 64 KiB": content("-----BEGIN PUBLIC KEY-----\n" + "A" * 70_000 + "\n"),
    "the private key": private_instead_of_public,
    "an RSA key": rsa_public,
    "a truncated PEM": content("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n"),
}


@pytest.mark.parametrize("name", list(BAD_PUBLIC_KEYS))
def test_verify_with_a_bad_key(signed: Signed, tmp_path: Path, name: str) -> None:
    key = BAD_PUBLIC_KEYS[name](tmp_path)
    line = assert_not_trusted(goldsmith("verify", signed.artifact, "--key", key), exit_code=2)
    assert str(key) in line


@pytest.mark.parametrize("name", list(HOSTILE_FILES))
def test_verify_with_a_manifest_that_is_no_file(signed: Signed, tmp_path: Path, name: str) -> None:
    manifest = HOSTILE_FILES[name](tmp_path)
    result = goldsmith(
        "verify", "--image", signed.image, "--manifest", manifest, "--key", signed.pub
    )
    assert str(manifest) in assert_not_trusted(result, exit_code=2)


@pytest.mark.parametrize("name", list(HOSTILE_FILES))
def test_verify_with_an_image_that_is_no_file(signed: Signed, tmp_path: Path, name: str) -> None:
    image = HOSTILE_FILES[name](tmp_path)
    result = goldsmith(
        "verify", "--image", image, "--manifest", signed.manifest, "--key", signed.pub
    )
    assert str(image) in assert_not_trusted(result, exit_code=2)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--min-version", "1.x"),
        ("--min-version", ""),
        ("--profile-digest", "sha256:xyz"),
        ("--name", ""),
        ("--version", ""),
        ("--profile", ""),
    ],
)
def test_verify_with_a_bad_pin(signed: Signed, flag: str, value: str) -> None:
    result = goldsmith("verify", signed.artifact, "--key", signed.pub, flag, value)
    assert flag in assert_not_trusted(result, exit_code=2)


def test_verify_an_artifact_folder_that_is_a_file(signed: Signed) -> None:
    result = goldsmith("verify", signed.image, "--key", signed.pub)
    assert "expected an artifact folder" in assert_not_trusted(result, exit_code=2)


# --- sign ----------------------------------------------------------------------------------


def encrypted_key(tmp: Path) -> Path:
    path = tmp / "encrypted.pem"
    write_keypair(generate_key(), path, passphrase="correct horse")
    return path


def public_instead_of_private(tmp: Path) -> Path:
    return make_key(tmp, "k").with_name("k.pem.pub")


BAD_PRIVATE_KEYS: dict[str, Maker] = {
    **HOSTILE_FILES,
    "text": content("not a key\n"),
    "not UTF-8": content(bytes(range(256))),
    "over 64 KiB": content("-----BEGIN PRIVATE KEY-----\n" + "A" * 70_000 + "\n"),
    "the public key": public_instead_of_private,
    "encrypted, no passphrase": encrypted_key,
}


@pytest.mark.parametrize("name", list(BAD_PRIVATE_KEYS))
def test_sign_with_a_bad_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.delenv("GOLDSMITH_KEY_PASSPHRASE", raising=False)
    artifact = make_artifact(tmp_path)
    key = BAD_PRIVATE_KEYS[name](tmp_path)
    line = assert_not_trusted(goldsmith("sign", artifact, "--key", key), exit_code=2)
    assert str(key) in line
    assert not (artifact / "manifest.dsse.json").exists()


def replace_record(record: str, edit: Callable[[Path], object]) -> Callable[[Path], Path]:
    def make(artifact: Path) -> Path:
        path = artifact / record
        edit(path)
        return path

    return make


def with_text(edit: Callable[[str], str]) -> Callable[[Path], object]:
    return lambda path: path.write_text(edit(path.read_text()))


def to_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def to_dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def to_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def append_member(raw: str) -> Callable[[str], str]:
    return lambda text: text.rstrip().removesuffix("}") + ", " + raw + "}"


def duplicate_first_result(text: str) -> str:
    doc = json.loads(text)
    doc["results"].append(doc["results"][0])
    return json.dumps(doc)


BAD_RECORDS: dict[str, Callable[[Path], Path]] = {
    "validation.json a FIFO": replace_record("validation.json", to_fifo),
    "validation.json /dev/zero": replace_record("validation.json", to_dev_zero),
    "validation.json a folder": replace_record("validation.json", to_folder),
    "validation.json not UTF-8": replace_record(
        "validation.json", lambda p: p.write_bytes(b"\xff" + p.read_bytes())
    ),
    "validation.json with a duplicated key": replace_record(
        "validation.json", with_text(append_member('"approved": true'))
    ),
    "validation.json nested 1000 deep": replace_record(
        "validation.json", with_text(append_member('"x": ' + "[" * 1000 + "]" * 1000))
    ),
    "validation.json with a 5000-digit integer": replace_record(
        "validation.json", with_text(append_member('"x": 1' + "0" * 5000))
    ),
    "validation.json with a lone surrogate": replace_record(
        "validation.json", with_text(append_member('"x": "\\ud800"'))
    ),
    "validation.json with a control listed twice": replace_record(
        "validation.json", with_text(duplicate_first_result)
    ),
    "validation.json with a number for a name": replace_record(
        "validation.json",
        with_text(lambda t: t.replace('"name": "debian-12-baseline"', '"name": 12', 1)),
    ),
    "validation.json a list": replace_record("validation.json", with_text(lambda t: "[" + t + "]")),
    "build.json with a duplicated key": replace_record(
        "build.json", with_text(append_member('"template": {}'))
    ),
    "build.json a FIFO": replace_record("build.json", to_fifo),
    "build.json truncated": replace_record("build.json", with_text(lambda t: t[:100])),
}


@pytest.mark.parametrize("name", list(BAD_RECORDS))
def test_sign_with_a_bad_record(tmp_path: Path, name: str) -> None:
    artifact = make_artifact(tmp_path)
    key = make_key(tmp_path)
    record = BAD_RECORDS[name](artifact)
    line = assert_not_trusted(goldsmith("sign", artifact, "--key", key), exit_code=2)
    assert str(record) in line
    assert not (artifact / "manifest.dsse.json").exists()


@pytest.mark.parametrize("name", ["a FIFO", "/dev/zero", "a folder"])
def test_sign_with_a_bad_previous_manifest(tmp_path: Path, name: str) -> None:
    artifact = make_artifact(tmp_path)
    previous = HOSTILE_FILES[name](tmp_path)
    result = goldsmith("sign", artifact, "--key", make_key(tmp_path), "--previous", previous)
    assert str(previous) in assert_not_trusted(result, exit_code=2)


def test_sign_an_artifact_folder_that_is_a_file(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path)
    result = goldsmith("sign", artifact / "disk.qcow2", "--key", make_key(tmp_path))
    assert "expected an artifact folder" in assert_not_trusted(result, exit_code=2)


# --- report ---------------------------------------------------------------------------------


def manifest_edit(edit: Callable[[bytes], bytes]) -> Callable[[Signed, Path], Path]:
    def make(signed: Signed, _tmp: Path) -> Path:
        signed.manifest.write_bytes(edit(signed.manifest.read_bytes()))
        return signed.manifest

    return make


def statement_bytes(edit: Callable[[bytes], bytes]) -> Callable[[Signed, Path], Path]:
    def make(signed: Signed, _tmp: Path) -> Path:
        from validate.manifest import encode_statement

        signed.resign(edit(encode_statement(signed.statement())))
        return signed.manifest

    return make


BAD_MANIFESTS: dict[str, Callable[[Signed, Path], Path]] = {
    **{name: (lambda maker: lambda _s, tmp: maker(tmp))(m) for name, m in HOSTILE_FILES.items()},
    "not UTF-8": manifest_edit(lambda b: b"\xff" + b),
    "a duplicated payload key": manifest_edit(
        lambda b: b.rstrip().removesuffix(b"}") + b', "payload": "e30="}'
    ),
    "nested 1000 deep": manifest_edit(lambda b: b"[" * 1000 + b + b"]" * 1000),
    "a statement with a lone surrogate": statement_bytes(
        lambda b: b.replace(b'"id":"baseline"', b'"id":"\\ud800"')
    ),
    "a statement with a duplicated key": statement_bytes(
        lambda b: b.replace(b'"approved":true', b'"approved":false,"approved":true')
    ),
    "a statement that is not JSON": statement_bytes(lambda b: b[:-1]),
    "an escape sequence for a key": statement_bytes(
        lambda b: b.replace(b'"inputs":{', b'"inputs":{"\\u001b[2J":[],', 1)
    ),
}


@pytest.mark.parametrize("name", list(BAD_MANIFESTS))
def test_report_with_a_bad_manifest(signed: Signed, tmp_path: Path, name: str) -> None:
    manifest = BAD_MANIFESTS[name](signed, tmp_path)
    line = assert_not_trusted(goldsmith("report", manifest), exit_code=2)
    assert str(manifest) in line


# --- history ----------------------------------------------------------------------------------


HISTORY_CASES: dict[str, Callable[[Signed], object]] = {
    "build.json a FIFO": lambda s: to_fifo(s.artifact / "build.json"),
    "build.json /dev/zero": lambda s: to_dev_zero(s.artifact / "build.json"),
    "build.json with a duplicated key": lambda s: with_text(append_member('"template": {}'))(
        s.artifact / "build.json"
    ),
    "manifest with a duplicated key": lambda s: with_text(append_member('"payload": "e30="'))(
        s.manifest
    ),
    "manifest nested 1000 deep": lambda s: s.manifest.write_text(
        "[" * 1000 + s.manifest.read_text() + "]" * 1000
    ),
}


@pytest.mark.parametrize("name", list(HISTORY_CASES))
def test_history_with_bad_files(signed: Signed, tmp_path: Path, name: str) -> None:
    HISTORY_CASES[name](signed)
    line = assert_not_trusted(goldsmith("history", tmp_path), exit_code=2)
    assert str(signed.artifact) in line


def test_history_reads_a_fifo_manifest_as_no_manifest(signed: Signed, tmp_path: Path) -> None:
    # history lists what is there; a FIFO is no manifest, and must not block the listing.
    to_fifo(signed.manifest)
    result = goldsmith("history", tmp_path)
    assert result.exit_code == 0, result.output
    assert "(not signed)" in result.stdout


def test_the_suite_is_big_enough() -> None:
    cases = (
        len(BAD_POLICIES)
        + len(BAD_PUBLIC_KEYS)
        + 2 * len(HOSTILE_FILES)
        + len(BAD_PRIVATE_KEYS)
        + len(BAD_RECORDS)
        + len(BAD_MANIFESTS)
        + len(HISTORY_CASES)
    )
    assert cases >= 30
