from __future__ import annotations

import dataclasses
import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.spec import (
    DEFAULT_MIRROR,
    DEFAULT_SECURITY_MIRROR,
    DebootstrapBase,
    FileBase,
    Timeouts,
    UrlBase,
    VmResources,
    load_spec,
)
from builder.spec_values import GIB, MIB, parse_size

DIGEST = "ab" * 32

MINIMAL = """\
name: debian-12-baseline
version: 1.0.0
base:
  debootstrap:
    suite: bookworm
profile: baseline
"""


def write_spec(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def load_error(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        load_spec(path)
    assert info.value.exit_code == 2
    return info.value


# --- valid specs -----------------------------------------------------------


def test_minimal_spec_gets_every_default(tmp_path: Path) -> None:
    path = write_spec(tmp_path, MINIMAL)

    spec = load_spec(path)

    assert spec.path == path.resolve()
    assert spec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert spec.name == "debian-12-baseline"
    assert spec.version == "1.0.0"
    assert spec.base == DebootstrapBase(
        suite="bookworm",
        mirror=DEFAULT_MIRROR,
        security_mirror=DEFAULT_SECURITY_MIRROR,
        packages=(),
    )
    assert spec.profile == "baseline"
    assert spec.packages == ()
    assert spec.upgrade is True
    assert spec.disk_size == 4 * GIB
    assert spec.vm == VmResources(memory=2048, cpus=2)
    assert spec.timeouts == Timeouts(boot=900, step=3600, shutdown=120)


def test_full_spec_keeps_every_value(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        name: web.node_1
        version: "2.1"
        base:
          debootstrap:
            suite: bookworm
            mirror: https://mirror.example.org/debian
            security_mirror: https://mirror.example.org/debian-security
            packages: [openssh-server, libstdc++6]
        profile: cis-level1
        packages: [vim-tiny, g++]
        upgrade: false
        disk_size: 10G
        vm: {memory: 4096, cpus: 4}
        timeouts: {boot: 60, step: 120, shutdown: 30}
        """,
    )

    spec = load_spec(path)

    assert spec.base == DebootstrapBase(
        suite="bookworm",
        mirror="https://mirror.example.org/debian",
        security_mirror="https://mirror.example.org/debian-security",
        packages=("openssh-server", "libstdc++6"),
    )
    assert spec.name == "web.node_1"
    assert spec.version == "2.1"
    assert spec.profile == "cis-level1"
    assert spec.packages == ("vim-tiny", "g++")
    assert spec.upgrade is False
    assert spec.disk_size == 10 * GIB
    assert spec.vm == VmResources(memory=4096, cpus=4)
    assert spec.timeouts == Timeouts(boot=60, step=120, shutdown=30)


def test_relative_paths_resolve_against_the_spec_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "base.qcow2").write_bytes(b"")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "strict.yaml").write_text("{}\n")
    (tmp_path / "specs").mkdir()
    write_spec(
        tmp_path / "specs",
        f"""\
        name: local
        version: "1"
        base:
          file: {{path: ../images/base.qcow2, sha256: {DIGEST.upper()}}}
        profile: ../profiles/strict.yaml
        """,
    )
    # Load by a relative path from somewhere else: the spec's folder wins.
    monkeypatch.chdir(tmp_path / "images")

    spec = load_spec(Path("../specs/spec.yaml"))

    assert spec.path == tmp_path.resolve() / "specs" / "spec.yaml"
    assert spec.base == FileBase(path=tmp_path.resolve() / "images" / "base.qcow2", sha256=DIGEST)
    assert spec.profile == str(tmp_path.resolve() / "profiles" / "strict.yaml")


def test_profile_file_without_slash_is_a_path(tmp_path: Path) -> None:
    (tmp_path / "mine.yml").write_text("{}\n")
    path = write_spec(tmp_path, MINIMAL.replace("profile: baseline", "profile: mine.yml"))

    assert load_spec(path).profile == str(tmp_path.resolve() / "mine.yml")


def test_file_base_sha256_is_optional(tmp_path: Path) -> None:
    (tmp_path / "base.qcow2").write_bytes(b"")
    path = write_spec(
        tmp_path,
        """\
        name: local
        version: "1"
        base: {file: {path: base.qcow2}}
        profile: baseline
        """,
    )

    assert load_spec(path).base == FileBase(path=tmp_path.resolve() / "base.qcow2", sha256=None)


def test_url_base(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        f"""\
        name: cloud
        version: "1"
        base:
          url:
            url: https://cloud.debian.org/images/debian-12-generic-amd64.qcow2
            sha256: {DIGEST}
        profile: baseline
        disk_size: 2147483648
        """,
    )

    spec = load_spec(path)

    assert spec.base == UrlBase(
        url="https://cloud.debian.org/images/debian-12-generic-amd64.qcow2", sha256=DIGEST
    )
    assert spec.disk_size == 2 * GIB


def test_spec_is_frozen(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, MINIMAL))

    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]


def test_canonical_is_json_without_the_spec_path(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, MINIMAL))

    canonical = spec.canonical()

    assert json.loads(json.dumps(canonical)) == canonical
    assert "path" not in canonical
    assert "sha256" not in canonical
    assert canonical["base"] == {
        "debootstrap": {
            "suite": "bookworm",
            "mirror": DEFAULT_MIRROR,
            "security_mirror": DEFAULT_SECURITY_MIRROR,
            "packages": [],
        }
    }
    assert canonical["disk_size"] == 4 * GIB
    assert canonical["timeouts"] == {"boot": 900, "step": 3600, "shutdown": 120}


def test_canonical_ignores_comments_and_location_but_not_content(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = load_spec(write_spec(tmp_path / "a", MINIMAL))
    commented = load_spec(write_spec(tmp_path / "b", "# a comment\n" + MINIMAL))
    changed = load_spec(write_spec(tmp_path, MINIMAL + "packages: [vim-tiny]\n"))

    assert first.sha256 != commented.sha256
    assert first.canonical() == commented.canonical()
    assert first.canonical() != changed.canonical()


# --- malformed specs -------------------------------------------------------

BAD_SPECS = [
    pytest.param(
        MINIMAL.replace("name: debian-12-baseline\n", ""),
        "name",
        "required key is missing",
        id="missing-name",
    ),
    pytest.param(
        MINIMAL.replace("name: debian-12-baseline", "name: Debian 12"),
        "name",
        "'Debian 12'",
        id="bad-name",
    ),
    pytest.param(
        MINIMAL.replace("name: debian-12-baseline", "name: -rf"),
        "name",
        "starting a-z or 0-9",
        id="name-starting-with-dash",
    ),
    pytest.param(
        MINIMAL.replace("version: 1.0.0", "version: 1.0"),
        "version",
        'quoted string such as "1.0", got number 1.0',
        id="version-float",
    ),
    pytest.param(
        MINIMAL.replace("version: 1.0.0", "version: 1.0/../x"),
        "version",
        "expected a version",
        id="version-with-slash",
    ),
    pytest.param(
        MINIMAL + "upgarde: false\n",
        "upgarde",
        "unknown key; did you mean 'upgrade'?",
        id="unknown-top-key",
    ),
    pytest.param(
        MINIMAL + "vm: {memroy: 4096}\n",
        "vm.memroy",
        "did you mean 'memory'?",
        id="unknown-vm-key",
    ),
    pytest.param(
        MINIMAL.replace("suite: bookworm", "suite: bookworm\n    mirorr: http://x.org/d"),
        "base.debootstrap.mirorr",
        "did you mean 'mirror'?",
        id="unknown-debootstrap-key",
    ),
    pytest.param(
        MINIMAL + 'upgrade: "yes"\n',
        "upgrade",
        "expected true or false, got string 'yes'",
        id="upgrade-string",
    ),
    pytest.param(
        MINIMAL + "packages: vim-tiny\n",
        "packages",
        "expected a list of package names, got string 'vim-tiny'",
        id="packages-scalar",
    ),
    pytest.param(
        MINIMAL + "packages: [vim-tiny, [nested]]\n",
        "packages[1]",
        "expected a package name, got a list",
        id="package-list-item",
    ),
    pytest.param(
        MINIMAL + "packages: [vim-tiny, Vim]\n",
        "packages[1]",
        "expected a Debian package name",
        id="package-uppercase",
    ),
    pytest.param(
        MINIMAL + "packages: [--allow-unauthenticated]\n",
        "packages[0]",
        "expected a Debian package name",
        id="package-option",
    ),
    pytest.param(
        MINIMAL.replace("suite: bookworm", "suite: bookworm\n    packages: [ok, 'x y']"),
        "base.debootstrap.packages[1]",
        "expected a Debian package name",
        id="debootstrap-package",
    ),
    pytest.param(
        MINIMAL.replace("suite: bookworm", "suite: ../etc"),
        "base.debootstrap.suite",
        "Debian suite name",
        id="bad-suite",
    ),
    pytest.param(
        MINIMAL.replace("suite: bookworm", "mirror: http://x.org/d"),
        "base.debootstrap.suite",
        "required key is missing",
        id="missing-suite",
    ),
    pytest.param(
        MINIMAL.replace("suite: bookworm", "suite: bookworm\n    mirror: ftp://x.org/d"),
        "base.debootstrap.mirror",
        "http:// or https:// URL",
        id="bad-mirror",
    ),
    pytest.param(
        MINIMAL.replace("  debootstrap:\n    suite: bookworm", "  {}"),
        "base",
        "exactly one of debootstrap, file or url, got none",
        id="base-none",
    ),
    pytest.param(
        MINIMAL.replace(
            "suite: bookworm", f"suite: bookworm\n  url: {{url: https://x.org/i, sha256: {DIGEST}}}"
        ),
        "base",
        "got debootstrap and url",
        id="base-two",
    ),
    pytest.param(
        MINIMAL.replace("  debootstrap:\n    suite: bookworm", "  url: {url: https://x.org/i}"),
        "base.url.sha256",
        "required key is missing",
        id="url-without-sha256",
    ),
    pytest.param(
        MINIMAL.replace(
            "  debootstrap:\n    suite: bookworm", "  url: {url: https://x.org/i, sha256: abc}"
        ),
        "base.url.sha256",
        "64 hex digits",
        id="url-bad-sha256",
    ),
    pytest.param(
        MINIMAL.replace(
            "  debootstrap:\n    suite: bookworm", f"  url: {{url: x.org/i, sha256: {DIGEST}}}"
        ),
        "base.url.url",
        "http:// or https:// URL",
        id="url-without-scheme",
    ),
    pytest.param(
        MINIMAL.replace("  debootstrap:\n    suite: bookworm", "  file: {path: missing.qcow2}"),
        "base.file.path",
        "does not exist",
        id="file-base-missing",
    ),
    pytest.param(
        MINIMAL.replace("  debootstrap:\n    suite: bookworm", "  debootstrap: bookworm"),
        "base.debootstrap",
        "expected a mapping of keys, got string 'bookworm'",
        id="debootstrap-scalar",
    ),
    pytest.param(
        MINIMAL.replace("profile: baseline", "profile: ./nope.yaml"),
        "profile",
        "does not exist",
        id="profile-file-missing",
    ),
    pytest.param(
        MINIMAL.replace("profile: baseline", "profile: Base Line"),
        "profile",
        "expected a profile name",
        id="bad-profile-name",
    ),
    pytest.param(
        MINIMAL + "disk_size: 4X\n",
        "disk_size",
        "expected a size such as 4G",
        id="bad-size",
    ),
    pytest.param(
        MINIMAL + "disk_size: 512M\n",
        "disk_size",
        "expected at least 1G, got 512M",
        id="size-too-small",
    ),
    pytest.param(
        MINIMAL + "disk_size: [4G]\n",
        "disk_size",
        "got a list",
        id="size-list",
    ),
    pytest.param(
        MINIMAL + "vm: {memory: 256}\n",
        "vm.memory",
        "expected at least 512 MiB, got 256",
        id="memory-too-small",
    ),
    pytest.param(
        MINIMAL + "vm: {memory: true}\n",
        "vm.memory",
        "expected an integer MiB, got boolean true",
        id="memory-bool",
    ),
    pytest.param(
        MINIMAL + "vm: {cpus: 0}\n",
        "vm.cpus",
        "expected at least 1, got 0",
        id="no-cpus",
    ),
    pytest.param(
        MINIMAL + "vm:\n",
        "vm",
        "expected a mapping of keys, got null",
        id="vm-null",
    ),
    pytest.param(
        MINIMAL + 'timeouts: {boot: "900"}\n',
        "timeouts.boot",
        "expected an integer seconds, got string '900'",
        id="timeout-string",
    ),
]


@pytest.mark.parametrize(("text", "field", "expected"), BAD_SPECS)
def test_malformed_spec_names_the_key(tmp_path: Path, text: str, field: str, expected: str) -> None:
    path = write_spec(tmp_path, text)

    error = load_error(path)

    assert error.field == field
    assert error.message.startswith(f"{path}: {field}: ")
    assert expected in error.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "name: again\n", "line 7: duplicate key 'name'"),
        (MINIMAL + "vm: {cpus: 2, cpus: 4}\n", "line 7: duplicate key 'cpus'"),
    ],
)
def test_a_key_given_twice_is_refused_with_its_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write_spec(tmp_path, text)

    assert load_error(path).message == f"{path}: {expected}"


def test_unknown_key_hint_lists_valid_keys(tmp_path: Path) -> None:
    error = load_error(write_spec(tmp_path, MINIMAL + "vm: {ram: 4096}\n"))

    assert error.field == "vm.ram"
    assert error.hint == "valid keys here: cpus, memory"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    error = load_error(path)

    assert error.message == f"{path}: spec file not found"


def test_unreadable_file(tmp_path: Path) -> None:
    # A directory cannot be read as a file, whoever runs the test.
    error = load_error(tmp_path)

    assert error.message.startswith(f"{tmp_path}: cannot read spec file")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"name: \xff\n")

    assert "not UTF-8" in load_error(path).message


def test_not_yaml_gives_the_line(tmp_path: Path) -> None:
    path = write_spec(tmp_path, MINIMAL + "packages: [vim\n")

    error = load_error(path)

    assert error.message.startswith(f"{path}: not valid YAML: line ")
    assert error.field is None


def test_not_yaml_gives_the_right_line(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "name: a\nversion: '1'\n  bad: indent\n")

    assert "line 3" in load_error(path).message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- name: a\n", "expected a mapping of keys, got a list"),
        ("just a string\n", "expected a mapping of keys, got string 'just a string'"),
        ("# only a comment\n", "expected a mapping of keys, got an empty file"),
        ("1: one\n", "expected string keys, got key integer 1"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    path = write_spec(tmp_path, text)

    error = load_error(path)

    assert error.message == f"{path}: {expected}"


# --- sizes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (0, 0),
        (1073741824, GIB),
        ("1073741824", GIB),
        ("512M", 512 * MIB),
        ("4G", 4 * GIB),
        ("4g", 4 * GIB),
        (" 2 G ", 2 * GIB),
        ("10K", 10 * 1024),
        ("1T", 1024 * GIB),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "4X", "4.5G", "-1G", "4GB", -1, True])
def test_parse_size_rejects(text: str | int) -> None:
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(text)
