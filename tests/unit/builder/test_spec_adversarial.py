"""Hostile specs: every one is refused with a one-line InputError (exit 2) that
names the spec file and the field (or the line of the YAML), never a traceback,
a hang or a value passed on to mmdebstrap, apt or QEMU.

Hand-picked cases, no fuzzing (the readers' hypothesis tests live elsewhere).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.errors import InputError
from builder.spec import load_spec
from builder.spec_values import url_problem

DIGEST = "ab" * 32


def debootstrap_spec() -> dict[str, Any]:
    return {
        "name": "demo",
        "version": "1.0.0",
        "base": {
            "debootstrap": {
                "suite": "bookworm",
                "mirror": "http://deb.debian.org/debian",
                "security_mirror": "http://deb.debian.org/debian-security",
                "packages": ["vim-tiny"],
            }
        },
        "profile": "baseline",
        "packages": ["curl"],
    }


def url_spec() -> dict[str, Any]:
    spec = debootstrap_spec()
    spec["base"] = {"url": {"url": "https://cloud.example.org/debian.qcow2", "sha256": DIGEST}}
    return spec


def file_spec(folder: Path) -> dict[str, Any]:
    (folder / "base.qcow2").write_bytes(b"QFI\xfb")
    spec = debootstrap_spec()
    spec["base"] = {"file": {"path": "base.qcow2", "sha256": DIGEST}}
    return spec


def write(folder: Path, spec: dict[str, Any] | str | bytes) -> Path:
    path = folder / "spec.yaml"
    if isinstance(spec, dict):
        # safe_dump quotes and escapes control characters, so the YAML itself
        # is valid and the hostile value reaches the loader's field checks.
        path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    elif isinstance(spec, str):
        path.write_text(textwrap.dedent(spec))
    else:
        path.write_bytes(spec)
    return path


def refused(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        load_spec(path)
    error = info.value
    assert error.exit_code == 2
    assert error.message.startswith(f"{path}: "), error.message
    # One line: whatever the value held, the message shows it escaped.
    for text in (error.message, error.hint or ""):
        assert not any(ch in text for ch in "\n\r\x00\x1b\x85\u2028\u202e"), text
    return error


# --- control characters in every string field ---------------------------------

# (field as the error names it, how to set it in a valid spec, which spec)
Setter = Callable[[dict[str, Any], str], None]


def _set(*keys: str | int) -> Setter:
    def setter(spec: dict[str, Any], value: str) -> None:
        node: Any = spec
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return setter


STRING_FIELDS: list[tuple[str, Setter, str]] = [
    ("name", _set("name"), "debootstrap"),
    ("version", _set("version"), "debootstrap"),
    ("profile", _set("profile"), "debootstrap"),
    ("packages[0]", _set("packages", 0), "debootstrap"),
    ("base.debootstrap.suite", _set("base", "debootstrap", "suite"), "debootstrap"),
    ("base.debootstrap.mirror", _set("base", "debootstrap", "mirror"), "debootstrap"),
    (
        "base.debootstrap.security_mirror",
        _set("base", "debootstrap", "security_mirror"),
        "debootstrap",
    ),
    ("base.debootstrap.packages[0]", _set("base", "debootstrap", "packages", 0), "debootstrap"),
    ("base.url.url", _set("base", "url", "url"), "url"),
    ("base.url.sha256", _set("base", "url", "sha256"), "url"),
    ("base.file.path", _set("base", "file", "path"), "file"),
    ("base.file.sha256", _set("base", "file", "sha256"), "file"),
]

# Appended to a value that is valid on its own.
CONTROLS = {
    "newline": "\n",
    "carriage-return": "\r",
    "tab": "\t",
    "nul": "\x00",
    "escape-sequence": "\x1b[2J",
    "c1-next-line": "\x85",
    "line-separator": "\u2028",
    "bidi-override": "\u202e",
}

VALID = {
    "name": "demo",
    "version": "1.0.0",
    "profile": "baseline",
    "packages[0]": "curl",
    "base.debootstrap.suite": "bookworm",
    "base.debootstrap.mirror": "http://deb.debian.org/debian",
    "base.debootstrap.security_mirror": "http://deb.debian.org/debian-security",
    "base.debootstrap.packages[0]": "vim-tiny",
    "base.url.url": "https://cloud.example.org/debian.qcow2",
    "base.url.sha256": DIGEST,
    "base.file.path": "base.qcow2",
    "base.file.sha256": DIGEST,
}


def make(kind: str, folder: Path) -> dict[str, Any]:
    if kind == "url":
        return url_spec()
    if kind == "file":
        return file_spec(folder)
    return debootstrap_spec()


@pytest.mark.parametrize("control", CONTROLS.values(), ids=CONTROLS.keys())
@pytest.mark.parametrize(
    ("field", "setter", "kind"), STRING_FIELDS, ids=[f[0] for f in STRING_FIELDS]
)
def test_a_control_character_in_any_string_is_refused(
    tmp_path: Path, field: str, setter: Setter, kind: str, control: str
) -> None:
    spec = make(kind, tmp_path)
    # In the middle, where a trim would not catch it.
    valid = VALID[field]
    setter(spec, valid[:3] + control + valid[3:])

    error = refused(write(tmp_path, spec))

    assert error.field == field


def test_the_valid_specs_above_load(tmp_path: Path) -> None:
    # The cases above fail for their one hostile character, not for another reason.
    for kind in ("debootstrap", "url", "file"):
        load_spec(write(tmp_path, make(kind, tmp_path)))


# --- the reported attack and its relatives --------------------------------------

SHELL_AND_SOURCES = [
    # The reported case: a second sources.list entry, trusted without a signature.
    "http://deb.debian.org/debian bookworm main\ndeb [trusted=yes] http://evil.example/ x",
    "http://deb.debian.org/debian [trusted=yes]",
    "http://deb.debian.org/$(id)",
    "http://deb.debian.org/`id`",
    "http://deb.debian.org/debian;reboot",
    "http://deb.debian.org/debian'\"",
    "http://deb.debian.org/debian|sh",
    "http://deb.debian.org/debian&&id",
    "http://deb.debian.org/%0adeb",
    "http://deb.debian.org/%",
]


@pytest.mark.parametrize("mirror", SHELL_AND_SOURCES)
@pytest.mark.parametrize("key", ["mirror", "security_mirror"])
def test_a_mirror_cannot_carry_words_lines_or_shell(tmp_path: Path, key: str, mirror: str) -> None:
    spec = debootstrap_spec()
    spec["base"]["debootstrap"][key] = mirror

    error = refused(write(tmp_path, spec))

    assert error.field == f"base.debootstrap.{key}"


BAD_URLS = [
    "ftp://ftp.debian.org/debian",
    "javascript:alert(1)",
    "file:///srv/mirror/debian",
    "file://localhost/etc/passwd",
    "data:text/plain,deb",
    "gopher://h/x",
    "HTTP://deb.debian.org/debian",
    "http:/deb.debian.org/debian",
    "//deb.debian.org/debian",
    "deb.debian.org/debian",
    "http://",
    "http:///debian",
    "http://user:secret@mirror.example/debian",
    "http://token@mirror.example/debian",
    "http://mirror.example:0/debian",
    "http://mirror.example:99999/debian",
    "http://mirror.example:http/debian",
    "http://-mirror.example/debian",
    "http://mirror_example/debian",
    "http://[not-an-address]/debian",
    "http://\uff4d\uff49rror.example/debian",
    "http://mirror.example/debian#frag",
    "http://mirror.example/deb ian",
    "http://mirror.example/debian\\..\\x",
    "http://mirror.example/" + "d" * 3000,
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_mirror_urls_are_refused(tmp_path: Path, url: str) -> None:
    spec = debootstrap_spec()
    spec["base"]["debootstrap"]["mirror"] = url

    error = refused(write(tmp_path, spec))

    assert error.field == "base.debootstrap.mirror"
    assert "expected an http:// or https:// URL" in error.message


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://h/image.qcow2",
        "https://u:p@h/image.qcow2",
        "https://h/image.qcow2#x",
        "https://h/image.qcow2?a=$(id)",
    ],
)
def test_bad_base_urls_are_refused(tmp_path: Path, url: str) -> None:
    spec = url_spec()
    spec["base"]["url"]["url"] = url

    assert refused(write(tmp_path, spec)).field == "base.url.url"


@pytest.mark.parametrize(
    "url",
    [
        "http://deb.debian.org/debian",
        "https://deb.debian.org/debian/",
        "http://127.0.0.1:3142/debian",
        "http://[::1]:3142/debian",
        "http://apt-cacher.internal.example:3142/deb.debian.org/debian",
        "http://mirror.example/~user/debian",
        "http://mirror.example/debian%2Bextra",
    ],
)
def test_ordinary_mirrors_are_accepted(url: str) -> None:
    assert url_problem(url) is None


def test_a_download_link_may_have_a_query_but_a_mirror_may_not() -> None:
    url = "https://h/image.qcow2?version=20240101&arch=amd64"
    assert url_problem(url, query=True) is None
    assert url_problem(url) is not None


# --- names, versions, suites, packages, digests -------------------------------


@pytest.mark.parametrize(
    ("field", "setter", "value"),
    [
        ("name", _set("name"), "../../etc"),
        ("name", _set("name"), "-rf"),
        ("name", _set("name"), ".hidden"),
        ("name", _set("name"), "a" * 64),
        ("name", _set("name"), "\uff44emo"),
        ("name", _set("name"), "demo;reboot"),
        ("name", _set("name"), "$(id)"),
        ("version", _set("version"), "1.0/../../x"),
        ("version", _set("version"), "1" * 65),
        ("version", _set("version"), "`id`"),
        ("version", _set("version"), "-1"),
        ("base.debootstrap.suite", _set("base", "debootstrap", "suite"), "../../etc"),
        ("base.debootstrap.suite", _set("base", "debootstrap", "suite"), "bookworm main"),
        ("base.debootstrap.suite", _set("base", "debootstrap", "suite"), "Bookworm"),
        ("base.debootstrap.suite", _set("base", "debootstrap", "suite"), "b" * 65),
        ("packages[0]", _set("packages", 0), "--allow-unauthenticated"),
        ("packages[0]", _set("packages", 0), "vim;reboot"),
        ("packages[0]", _set("packages", 0), "vim,curl"),
        ("packages[0]", _set("packages", 0), "vim curl"),
        ("packages[0]", _set("packages", 0), "'vim'"),
        ("packages[0]", _set("packages", 0), "p" * 129),
        ("profile", _set("profile"), "Base Line"),
        ("profile", _set("profile"), "$(id)"),
    ],
)
def test_strict_patterns(tmp_path: Path, field: str, setter: Setter, value: str) -> None:
    spec = debootstrap_spec()
    setter(spec, value)

    assert refused(write(tmp_path, spec)).field == field


@pytest.mark.parametrize("digest", ["ab" * 31, "ab" * 33, "g" * 64, "sha256:" + "ab" * 32, ""])
def test_a_sha256_is_exactly_64_hex_digits(tmp_path: Path, digest: str) -> None:
    spec = url_spec()
    spec["base"]["url"]["sha256"] = digest

    assert refused(write(tmp_path, spec)).field == "base.url.sha256"


# --- numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("vm.memory", "vm: {memory: 100000000000}", "at most"),
        ("vm.cpus", "vm: {cpus: 100000}", "at most"),
        ("vm.cpus", "vm: {cpus: -1}", "at least"),
        ("timeouts.boot", "timeouts: {boot: 99999999999}", "at most"),
        ("timeouts.step", "timeouts: {step: 1.5}", "expected an integer"),
        ("disk_size", "disk_size: 99999999999999999999T", "at most 64T"),
        ("disk_size", "disk_size: 4\u0663G", "expected a size"),
        ("disk_size", "disk_size: \uff14G", "expected a size"),
        ("disk_size", "disk_size: 4\u212a", "expected a size"),
        ("disk_size", "disk_size: 123456789012345678901G", "expected a size"),
    ],
)
def test_numbers_are_bounded(tmp_path: Path, field: str, text: str, expected: str) -> None:
    path = write(tmp_path, yaml.safe_dump(debootstrap_spec()) + text + "\n")

    error = refused(path)

    assert error.field == field
    assert expected in error.message


def test_an_integer_too_long_to_convert_is_refused_by_the_reader(tmp_path: Path) -> None:
    path = write(
        tmp_path, yaml.safe_dump(debootstrap_spec()) + "vm: {memory: " + "9" * 5000 + "}\n"
    )

    error = refused(path)

    assert "an integer of more than 30 digits" in error.message
    assert "line " in error.message


# --- YAML structure ------------------------------------------------------------------

MINIMAL = """\
name: demo
version: "1.0.0"
base:
  debootstrap:
    suite: bookworm
profile: baseline
"""


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (MINIMAL + "name: again\n", "name"),
        (
            MINIMAL.replace("base:\n", "base:\n  debootstrap: {suite: sid}\n"),
            "debootstrap",
        ),
        (MINIMAL.replace("suite: bookworm", "suite: bookworm\n    suite: sid"), "suite"),
        (MINIMAL + "vm: {memory: 4096, memory: 512}\n", "memory"),
        (MINIMAL + "timeouts:\n  boot: 10\n  boot: 20\n", "boot"),
        (MINIMAL + "packages: [a1]\npackages: [b1]\n", "packages"),
        (
            MINIMAL.replace(
                "  debootstrap:\n    suite: bookworm",
                f"  url:\n    url: https://h/i\n    sha256: {DIGEST}\n    sha256: {'cd' * 32}",
            ),
            "sha256",
        ),
    ],
)
def test_a_duplicate_key_at_any_level_is_refused(tmp_path: Path, text: str, key: str) -> None:
    error = refused(write(tmp_path, text))

    assert f"duplicate key '{key}'" in error.message
    assert "line " in error.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed\n", "not valid YAML: line "),
        ("name: a\n  bad: indent\n", "not valid YAML: line 2"),
        ("---\nname: a\n---\nname: b\n", "not valid YAML"),
        ('name: !!python/object/apply:os.system ["id"]\n', "not valid YAML"),
        ("a: &a [1]\nb: {<<: *a}\n", "merge keys"),
        ("? [a, b]\n: c\n", "a key must be a scalar"),
        ("a: " + "[" * 200 + "]" * 200 + "\n", "nested deeper than 64 levels"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
                for i in range(7)
            ),
            "aliases count once per use",
        ),
        ('name: "\\ud800"\n', "lone surrogate"),
        (MINIMAL + "timeouts: {shutdown: .inf}\n", "inf or nan"),
    ],
)
def test_yaml_that_is_no_spec_is_refused_with_its_reason(
    tmp_path: Path, text: str, expected: str
) -> None:
    error = refused(write(tmp_path, text))

    assert expected in error.message
    assert error.field is None


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("- name: demo\n", None, "expected a mapping of keys, got a list"),
        (
            MINIMAL.replace("base:\n  debootstrap:\n    suite: bookworm", "base: [debootstrap]"),
            "base",
            "expected a mapping",
        ),
        (
            MINIMAL.replace("    suite: bookworm", "    - suite: bookworm"),
            "base.debootstrap",
            "expected a mapping",
        ),
        (MINIMAL + "vm: [1, 2]\n", "vm", "expected a mapping"),
        (MINIMAL + "timeouts: soon\n", "timeouts", "expected a mapping"),
        (MINIMAL + "packages: {vim: true}\n", "packages", "expected a list"),
        (MINIMAL.replace("name: demo", "name: !!binary ZGVtbw=="), "name", "expected a string"),
        (MINIMAL.replace("name: demo", "name: 2024-01-01"), "name", "expected a string"),
        (MINIMAL.replace("name: demo", "name: {a: b}"), "name", "expected a string"),
        (MINIMAL + '"na\\x1bme": x\n', None, "printable characters"),
        (MINIMAL + "1: one\n", None, "expected string keys"),
    ],
)
def test_the_wrong_shape_names_the_field(
    tmp_path: Path, text: str, field: str | None, expected: str
) -> None:
    error = refused(write(tmp_path, text))

    assert error.field == field
    assert expected in error.message


# --- what the file is -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "expected a mapping of keys, got an empty file"),
        (b"# only a comment\n", "expected a mapping of keys, got an empty file"),
        (b"name: \xff\xfe\n", "not UTF-8"),
        ("name: demo\n".encode("utf-16"), "not UTF-8"),
        (b"name: demo\x00\n", "#x0000"),
        (b"name: demo\x1b[2J\n", "#x001b"),
    ],
)
def test_bytes_that_are_no_yaml_text(tmp_path: Path, data: bytes, expected: str) -> None:
    assert expected in refused(write(tmp_path, data)).message


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)

    assert "not a regular file" in refused(fifo).message


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_refused_without_reading_it(device: str) -> None:
    if not Path(device).exists():
        pytest.skip(f"{device} is missing")
    assert "not a regular file" in refused(Path(device)).message


def test_a_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "spec.yaml"
    link.symlink_to("/dev/zero")

    assert "not a regular file" in refused(link).message


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert "not a regular file" in refused(tmp_path).message


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # sparse: costs no disk

    assert "larger than" in refused(path).message


def test_a_missing_file(tmp_path: Path) -> None:
    assert refused(tmp_path / "absent.yaml").message.endswith("spec file not found")
