"""goldsmith outdated: package indexes served over HTTP on 127.0.0.1, and the
reasons a template needs rebuilding (Debian version ordering: test_debversion.py).

The manifests here are built in the test and carry a dummy signature: outdated
decodes envelopes and never verifies them.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import functools
import gzip
import hashlib
import http.server
import json
import lzma
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder.base import bootstrap_inputs
from builder.cli import cli
from builder.errors import InputError
from builder.outdated import (
    MirrorError,
    PackageSource,
    ReasonKind,
    check_outdated,
    parse_packages,
    read_manifest,
)
from builder.spec import DebootstrapBase, load_spec
from hardening.profile import load_profile
from validate.results import Package

NOW = datetime.datetime(2026, 11, 27, 8, 0, 0, tzinfo=datetime.UTC)
GOLDEN_RECORD = (
    Path(__file__).resolve().parents[3] / "tests/data/golden/debian-12-baseline-1.0.0/build.json"
)

# --- Packages indexes -------------------------------------------------------------


def packages_text(packages: Sequence[tuple[str, str, str]]) -> str:
    stanzas = []
    for name, version, arch in packages:
        stanzas.append(
            f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
            f"Description: the {name} package\n a continuation line: Version: 0\n"
        )
    return "\n".join(stanzas)


def test_parse_packages_reads_three_fields_and_skips_continuations() -> None:
    text = packages_text([("libc6", "2.36-9", "amd64"), ("tzdata", "2024a-0", "all")])
    parsed = list(parse_packages(text.splitlines(keepends=True)))
    assert parsed == [Package("libc6", "2.36-9", "amd64"), Package("tzdata", "2024a-0", "all")]
    only = list(parse_packages(text.splitlines(), frozenset({"tzdata"})))
    assert only == [Package("tzdata", "2024a-0", "all")]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclasses.dataclass
class Mirror:
    root: Path
    url: str  # the web root; Debian lives under /debian, security under /debian-security

    @property
    def debian(self) -> str:
        return f"{self.url}/debian"

    @property
    def security(self) -> str:
        return f"{self.url}/debian-security"

    def publish(
        self,
        archive: str,
        suite: str,
        packages: Sequence[tuple[str, str, str]],
        variant: str = "Packages.xz",
    ) -> Path:
        folder = self.root / archive / "dists" / suite / "main" / "binary-amd64"
        folder.mkdir(parents=True, exist_ok=True)
        data = packages_text(packages).encode()
        if variant.endswith(".xz"):
            data = lzma.compress(data)
        elif variant.endswith(".gz"):
            data = gzip.compress(data)
        path = folder / variant
        path.write_bytes(data)
        return path


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    # A proxy configured on the machine must not see requests for the local server.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Mirror(root, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- manifests built in the test ---------------------------------------------------

INSTALLED = [
    ("libc6", "2.36-9+deb12u4", "amd64"),
    ("openssl", "3.0.11-1~deb12u2", "amd64"),
    ("tzdata", "2024a-0+deb12u1", "all"),
    ("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
    ("libc6", "2.36-9+deb12u4", "i386"),
]


def statement(
    *,
    name: str = "demo",
    version: str = "1.0.0",
    spec_sha256: str = "00" * 32,
    profile_digest: str = "sha256:" + "00" * 32,
    base: dict[str, Any] | None = None,
    packages: Sequence[tuple[str, str, str]] = INSTALLED,
    waivers: Sequence[str] = (),
    valid_until: datetime.datetime = NOW + datetime.timedelta(days=90),
    approval: datetime.datetime = NOW - datetime.timedelta(days=1),
    image_sha256: str = "ab" * 32,
    build_record_sha256: str = "cd" * 32,
    previous: str | None = None,
    provision: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An in-toto statement shaped as the data formats define the goldsmith manifest."""
    predicate: dict[str, Any] = {
        "template": {"name": name, "version": version, "format": "qcow2", "virtualSize": 1 << 32},
        "base": [base or {}],
        "profile": {"id": "baseline", "version": "1.0.0", "digest": profile_digest},
        "results": {"approved": True, "counts": {}, "controls": []},
        "waivers": [{"control": c, "reason": "test", "expires": None} for c in waivers],
        "sbom": {
            "format": "goldsmith-dpkg/v1",
            "packages": [{"name": n, "version": v, "architecture": a} for n, v, a in packages],
        },
        "builder": {"id": "https://goldsmith.dev/builder", "version": "0.1.0"},
        "tools": {"qemu": "7.2.22", "goldsmith": "0.1.0"},
        "inputs": {
            "spec": {"uri": "/spec.yaml", "digest": {"sha256": spec_sha256}},
            "profile": {"uri": "/profile.yaml", "digest": {"sha256": profile_digest[7:]}},
        },
        "build": {
            "accelerator": "tcg",
            "started": approval.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "finished": approval.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "record": {"digest": {"sha256": build_record_sha256}},
        },
        "approval": {
            "time": approval.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "keyid": "ee" * 32,
            "validUntil": valid_until.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    if provision is not None:
        predicate["provision"] = provision
    if previous is not None:
        predicate["previousManifest"] = {"digest": {"sha256": previous}}
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": f"{name}-{version}.qcow2", "digest": {"sha256": image_sha256, "sha512": "0"}}
        ],
        "predicateType": "https://goldsmith.dev/template/v1",
        "predicate": predicate,
    }


def write_envelope(path: Path, doc: dict[str, Any]) -> Path:
    """A DSSE envelope with a dummy signature (nothing here verifies it)."""
    payload = json.dumps(doc, separators=(",", ":")).encode()
    envelope = {
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "ee" * 32, "sig": base64.b64encode(bytes(64)).decode()}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(envelope, indent=2) + "\n")
    return path


SPEC = """\
name: demo
version: 1.0.0
base:
  debootstrap:
    suite: bookworm
    mirror: {mirror}
    security_mirror: {security}
profile: baseline
"""


@dataclasses.dataclass
class Scene:
    spec: Path
    manifest: Path
    mirror: Mirror

    def write(self, **changes: Any) -> Path:
        """Rewrite the manifest as a faithful record of the spec, with ``changes``."""
        spec = load_spec(self.spec)
        assert isinstance(spec.base, DebootstrapBase)
        fields: dict[str, Any] = {
            "spec_sha256": spec.sha256,
            "profile_digest": load_profile("baseline").digest,
            "base": {
                "name": "debian-bookworm-debootstrap",
                "uri": spec.base.mirror,
                "source": "debootstrap",
                "digest": {"sha256": "12" * 32},
                "inputs": bootstrap_inputs(spec.base),
            },
        }
        fields.update(changes)
        return write_envelope(self.manifest, statement(**fields))


@pytest.fixture
def scene(tmp_path: Path, mirror: Mirror) -> Scene:
    spec = tmp_path / "demo.yaml"
    spec.write_text(SPEC.format(mirror=mirror.debian, security=mirror.security))
    current = [p for p in INSTALLED if p[2] != "i386"]
    mirror.publish("debian", "bookworm", current)
    mirror.publish("debian", "bookworm-updates", [], "Packages.gz")
    mirror.publish("debian-security", "bookworm-security", [], "Packages")
    made = Scene(spec, tmp_path / "out" / "demo-1.0.0" / "manifest.dsse.json", mirror)
    made.write()
    return made


def kinds(report: Any) -> list[ReasonKind]:
    return [r.kind for r in report.reasons]


def test_a_faithful_manifest_is_current(scene: Scene) -> None:
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert report.reasons == ()
    assert not report.rebuild
    assert report.updates == ()
    assert report.template == "demo"
    assert report.checked == "2026-11-27T08:00:00Z"


def test_security_update_is_named(scene: Scene) -> None:
    scene.mirror.publish(
        "debian-security",
        "bookworm-security",
        [("openssl", "3.0.13-1~deb12u1", "amd64")],
        "Packages",
    )
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert kinds(report) == [ReasonKind.security]
    (update,) = report.updates
    assert (update.name, update.installed, update.available) == (
        "openssl",
        "3.0.11-1~deb12u2",
        "3.0.13-1~deb12u1",
    )
    assert update.security
    assert update.suite == "bookworm-security"


def test_updates_suite_is_a_plain_update(scene: Scene) -> None:
    scene.mirror.publish(
        "debian",
        "bookworm-updates",
        [("tzdata", "2024b-0+deb12u1", "all"), ("libc6", "2.36-9+deb12u3", "amd64")],
        "Packages.gz",
    )
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert kinds(report) == [ReasonKind.packages]
    (update,) = report.updates  # libc6 there is older than installed
    assert (update.name, update.architecture, update.suite) == ("tzdata", "all", "bookworm-updates")
    assert not update.security


def test_newest_version_wins_and_security_is_still_flagged(scene: Scene) -> None:
    scene.mirror.publish(
        "debian", "bookworm-updates", [("libc6", "2.36-9+deb12u9", "amd64")], "Packages.gz"
    )
    scene.mirror.publish(
        "debian-security", "bookworm-security", [("libc6", "2.36-9+deb12u7", "amd64")], "Packages"
    )
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    (update,) = report.updates
    assert update.available == "2.36-9+deb12u9"
    assert update.suite == "bookworm-updates"
    assert update.security  # a security fix is among the newer versions


def test_equal_or_older_and_foreign_architectures_are_not_updates(scene: Scene) -> None:
    scene.mirror.publish(
        "debian",
        "bookworm",
        [
            ("libc6", "2.36-9+deb12u4", "amd64"),
            ("zlib1g", "1.2.99-1", "amd64"),  # epoch 1 installed: this is older
            ("libc6", "2.36-9+deb12u9", "i386"),  # amd64 index never speaks for i386
            ("openssl", "not a version!", "amd64"),
        ],
    )
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert report.updates == ()


def test_xz_is_preferred_then_gz_then_plain(scene: Scene) -> None:
    newer = [("openssl", "3.0.99-1", "amd64")]
    # A .gz with an update beside an .xz without: the .xz is the one read.
    scene.mirror.publish("debian", "bookworm", newer, "Packages.gz")
    assert check_outdated(scene.spec, scene.manifest, now=NOW).updates == ()
    (scene.mirror.root / "debian/dists/bookworm/main/binary-amd64/Packages.xz").unlink()
    assert check_outdated(scene.spec, scene.manifest, now=NOW).updates[0].available == "3.0.99-1"
    (scene.mirror.root / "debian/dists/bookworm/main/binary-amd64/Packages.gz").unlink()
    scene.mirror.publish("debian", "bookworm", [("openssl", "3.0.98-1", "amd64")], "Packages")
    assert check_outdated(scene.spec, scene.manifest, now=NOW).updates[0].available == "3.0.98-1"


def test_missing_updates_index_is_a_note(scene: Scene) -> None:
    shutil.rmtree(scene.mirror.root / "debian/dists/bookworm-updates")
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert not report.rebuild
    assert any("bookworm-updates" in note for note in report.notes)


def test_missing_release_index_is_a_mirror_error(scene: Scene) -> None:
    shutil.rmtree(scene.mirror.root / "debian/dists/bookworm")
    with pytest.raises(MirrorError, match="no package index for bookworm") as info:
        check_outdated(scene.spec, scene.manifest, now=NOW)
    assert info.value.exit_code == 3


def test_corrupt_index_is_a_mirror_error(scene: Scene) -> None:
    path = scene.mirror.root / "debian/dists/bookworm/main/binary-amd64/Packages.xz"
    path.write_bytes(b"\xfd7zXZ\x00 but not really")
    with pytest.raises(MirrorError, match=r"Packages\.xz"):
        check_outdated(scene.spec, scene.manifest, now=NOW)


def test_unreachable_mirror_is_a_mirror_error(tmp_path: Path, scene: Scene) -> None:
    spec = tmp_path / "closed.yaml"
    # Port 9 (discard) on loopback: nothing listens there.
    spec.write_text(
        SPEC.format(mirror="http://127.0.0.1:9/debian", security="http://127.0.0.1:9/sec")
    )
    doc = json.loads(base64.b64decode(json.loads(scene.manifest.read_text())["payload"]))
    doc["predicate"]["inputs"]["spec"]["digest"]["sha256"] = load_spec(spec).sha256
    with pytest.raises(MirrorError, match="cannot read the package index"):
        check_outdated(spec, write_envelope(tmp_path / "m.json", doc), now=NOW)


def test_spec_change_is_a_reason(scene: Scene) -> None:
    scene.spec.write_text(scene.spec.read_text() + "packages: [curl]\n")
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert kinds(report) == [ReasonKind.spec]
    assert "spec changed" in report.reasons[0].message


def test_profile_change_is_a_reason(scene: Scene) -> None:
    scene.write(profile_digest="sha256:" + "99" * 32)
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert kinds(report) == [ReasonKind.profile]


def test_base_inputs_change_is_a_reason(scene: Scene) -> None:
    spec = load_spec(scene.spec)
    assert isinstance(spec.base, DebootstrapBase)
    old = {**bootstrap_inputs(spec.base), "recipe": 1, "key": "whatever"}
    scene.write(base={"name": "x", "uri": "y", "source": "debootstrap", "inputs": old})
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert kinds(report) == [ReasonKind.base]
    assert report.reasons[0].message == "base changed: recipe differ"


def test_base_inputs_come_from_the_signed_build_record(scene: Scene) -> None:
    spec = load_spec(scene.spec)
    assert isinstance(spec.base, DebootstrapBase)
    inputs = {**bootstrap_inputs(spec.base), "key": "k"}
    inputs["packages"] = [*inputs["packages"], "vim"]
    record = scene.manifest.parent / "build.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    # The golden build record, its base's recipe inputs changed.
    document = json.loads(GOLDEN_RECORD.read_bytes())
    document["base"]["inputs"] = inputs
    record.write_text(json.dumps(document))
    bare = {
        "name": "debian-bookworm-debootstrap",
        "uri": spec.base.mirror,
        "source": "debootstrap",
        "digest": {"sha256": "12" * 32},
    }
    digest = hashlib.sha256(record.read_bytes()).hexdigest()
    scene.write(base=bare, build_record_sha256=digest)
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert [r.message for r in report.reasons] == ["base changed: packages differ"]

    # A build.json the manifest does not name is not evidence of anything.
    scene.write(base=bare)
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert report.reasons == ()
    assert any("not the build record" in n for n in report.notes)
    assert any("compared suite and mirror only" in n for n in report.notes)


def test_base_mirror_change_without_inputs(scene: Scene) -> None:
    bare = {
        "name": "debian-bookworm-debootstrap",
        "uri": "http://old.example/debian",
        "source": "debootstrap",
        "digest": {"sha256": "12" * 32},
    }
    scene.write(base=bare)
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert [r.message for r in report.reasons] == ["base changed: mirror differ"]


def test_expired_approval_is_a_reason(scene: Scene) -> None:
    scene.write(valid_until=NOW - datetime.timedelta(seconds=1))
    assert kinds(check_outdated(scene.spec, scene.manifest, now=NOW)) == [ReasonKind.expired]


def test_lapsed_waiver_is_a_reason(tmp_path: Path, scene: Scene) -> None:
    profile = tmp_path / "waived.yaml"
    profile.write_text(
        textwrap.dedent(
            """\
            extends: baseline
            id: waived
            waivers:
              - control: kernel-aslr
                reason: vendor agent needs it until its next release
                expires: 2026-11-01
            """
        )
    )
    scene.spec.write_text(scene.spec.read_text().replace("baseline", str(profile)))
    digest = load_profile(profile).digest
    scene.write(
        spec_sha256=load_spec(scene.spec).sha256, profile_digest=digest, waivers=["kernel-aslr"]
    )
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert kinds(report) == [ReasonKind.waiver]
    assert "kernel-aslr" in report.reasons[0].message
    before = NOW.replace(month=10)
    assert check_outdated(scene.spec, scene.manifest, now=before).reasons == ()


def file_spec(folder: Path, image: Path, pin: str) -> Path:
    spec = folder / "file.yaml"
    spec.write_text(
        f"name: demo\nversion: 1.0.0\nbase:\n  file:\n    path: {image}\n"
        f"    sha256: {pin}\nprofile: baseline\n"
    )
    return spec


def test_file_base_without_mirror_skips_packages(tmp_path: Path) -> None:
    image = tmp_path / "base.img"
    image.write_bytes(b"image")
    spec = file_spec(tmp_path, image, "ab" * 32)
    base = {"name": "base.img", "uri": image.as_uri(), "source": "file"}
    doc = statement(
        spec_sha256=load_spec(spec).sha256,
        profile_digest=load_profile("baseline").digest,
        base={**base, "digest": {"sha256": "ab" * 32}},
    )
    manifest = write_envelope(tmp_path / "m.json", doc)
    report = check_outdated(spec, manifest, now=NOW)
    assert report.reasons == ()
    assert any("package updates not checked" in n for n in report.notes)

    doc["predicate"]["base"][0]["digest"]["sha256"] = "cd" * 32
    report = check_outdated(spec, write_envelope(manifest, doc), now=NOW)
    assert kinds(report) == [ReasonKind.base]


def test_file_base_with_a_named_mirror(tmp_path: Path, mirror: Mirror) -> None:
    image = tmp_path / "base.img"
    image.write_bytes(b"image")
    spec = file_spec(tmp_path, image, "ab" * 32)
    doc = statement(
        spec_sha256=load_spec(spec).sha256,
        profile_digest=load_profile("baseline").digest,
        base={"name": "b", "uri": "u", "source": "file", "digest": {"sha256": "ab" * 32}},
    )
    manifest = write_envelope(tmp_path / "m.json", doc)
    mirror.publish("debian", "bookworm", [("openssl", "3.0.99-1", "amd64")])
    source = PackageSource("bookworm", mirror.debian, mirror.security)
    report = check_outdated(spec, manifest, now=NOW, source=source)
    assert [u.name for u in report.updates] == ["openssl"]
    assert any("bookworm-security" in n for n in report.notes)  # not published

    args = ["outdated", str(spec), "--manifest", str(manifest), "--json", "--suite", "bookworm"]
    args += ["--mirror", mirror.debian, "--security-mirror", mirror.security]
    result = run_cli(*args)
    assert result.exit_code == 1, result.output
    assert json.loads(result.output)["updates"][0]["available"] == "3.0.99-1"


def test_manifest_for_another_template_is_an_input_error(scene: Scene) -> None:
    scene.write(name="other")
    with pytest.raises(InputError, match="template 'other'") as info:
        check_outdated(scene.spec, scene.manifest, now=NOW)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("mangle", "field"),
    [
        (lambda d: d.update(predicateType="https://example.com/other"), "predicateType"),
        (lambda d: d["predicate"]["sbom"].update(packages=[{"name": "x"}]), "version"),
        (lambda d: d["predicate"].update(base={"name": "x"}), "base"),
        (lambda d: d["predicate"]["template"].pop("name"), "template.name"),
    ],
)
def test_malformed_statements_name_the_field(tmp_path: Path, mangle: Any, field: str) -> None:
    doc = statement()
    mangle(doc)
    with pytest.raises(InputError, match=field):
        read_manifest(write_envelope(tmp_path / "m.json", doc))


def test_read_manifest_digest_is_of_the_file_bytes(tmp_path: Path) -> None:
    path = write_envelope(tmp_path / "m.json", statement(previous="77" * 32))
    facts = read_manifest(path)
    assert facts.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert facts.previous_manifest_sha256 == "77" * 32
    assert facts.packages[0] == Package("libc6", "2.36-9+deb12u4", "amd64")


# --- the command line ----------------------------------------------------------------


def run_cli(*args: str) -> Any:
    """Run through the goldsmith CLI."""
    return CliRunner().invoke(cli, list(args))


def test_cli_current_exits_0(scene: Scene) -> None:
    result = run_cli("outdated", str(scene.spec), "--manifest", str(scene.manifest))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("CURRENT: demo 1.0.0")


def test_cli_rebuild_exits_1_with_json(scene: Scene) -> None:
    scene.mirror.publish(
        "debian-security",
        "bookworm-security",
        [("openssl", "3.0.13-1~deb12u1", "amd64")],
        "Packages",
    )
    result = run_cli("outdated", str(scene.spec), "--manifest", str(scene.manifest), "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.output)
    assert doc["rebuild"] is True
    assert doc["reasons"] == [{"kind": "security", "message": "1 security update available"}]
    assert doc["updates"][0]["name"] == "openssl"
    assert doc["updates"][0]["security"] is True


def test_cli_bad_manifest_exits_2(scene: Scene) -> None:
    scene.manifest.write_text("not json")
    result = run_cli("outdated", str(scene.spec), "--manifest", str(scene.manifest))
    assert result.exit_code == 2
    assert "manifest.dsse.json" in result.output
    assert "Traceback" not in result.output


def test_cli_help_says_it_does_not_verify() -> None:
    result = run_cli("outdated", "--help")
    assert result.exit_code == 0
    assert "goldsmith verify" in result.output


# --- hostile input: one line and exit 2 (3 for the mirror), never a traceback or a hang ----


def one_line_error(result: Any, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines: list[str] = result.stderr.splitlines()
    assert lines and lines[0].startswith("goldsmith: error: "), result.stderr
    assert all(line.startswith("  hint: ") for line in lines[1:]), result.stderr
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    return lines[0]


def outdated_cli(spec: Path, manifest: Path, *extra: str) -> Any:
    return run_cli("outdated", str(spec), "--manifest", str(manifest), *extra)


def run_goldsmith(*args: str) -> subprocess.CompletedProcess[str]:
    """A real goldsmith process, for inputs that would hang a broken reader:
    the timeout turns a hang into a failure instead of a stuck test run."""
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


HOSTILE_SPECS = [
    pytest.param(
        "mirror: {mirror}\n",
        'mirror: "{mirror} bookworm main\\ndeb [trusted=yes] http://evil.example/ x"\n',
        "base.debootstrap.mirror",
        id="newline-in-mirror",
    ),
    pytest.param(
        "security_mirror: {security}\n",
        'security_mirror: "{security}\\r"\n',
        "base.debootstrap.security_mirror",
        id="cr-in-security-mirror",
    ),
    pytest.param(
        "suite: bookworm\n", 'suite: "bookworm\\tx"\n', "base.debootstrap.suite", id="tab"
    ),
    pytest.param("name: demo\n", 'name: "demo\\e[2J"\n', "name", id="escape-in-name"),
    pytest.param("name: demo\n", "name: demo\nname: demo\n", "duplicate key 'name'", id="dup"),
    pytest.param("name: demo\n", "name: " + "[" * 100 + "]" * 100 + "\n", "nested", id="deep"),
    pytest.param(
        "name: demo\n", "name: demo\nvm: {{memory: " + "9" * 40 + "}}\n", "digits", id="int"
    ),
    pytest.param("mirror: {mirror}\n", "mirror: ftp://x.example/d\n", "mirror", id="ftp"),
    pytest.param("mirror: {mirror}\n", "mirror: file:///etc\n", "mirror", id="file-url"),
    pytest.param("profile: baseline\n", "profile: [baseline]\n", "profile", id="list"),
]


@pytest.mark.parametrize(("old", "new", "named"), HOSTILE_SPECS)
def test_outdated_with_a_hostile_spec_is_one_line_exit_2(
    scene: Scene, old: str, new: str, named: str
) -> None:
    values = {"mirror": scene.mirror.debian, "security": scene.mirror.security}
    text = scene.spec.read_text()
    assert old.format(**values) in text
    scene.spec.write_text(text.replace(old.format(**values), new.format(**values)))

    line = one_line_error(outdated_cli(scene.spec, scene.manifest))

    assert str(scene.spec) in line
    assert named in line


def test_outdated_with_a_spec_fifo_does_not_wait(scene: Scene) -> None:
    fifo = scene.spec.with_name("fifo.yaml")
    os.mkfifo(fifo)

    proc = run_goldsmith("outdated", str(fifo), "--manifest", str(scene.manifest))

    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"goldsmith: error: {fifo}: cannot read spec file: not a regular file"
    ]


def test_outdated_with_a_manifest_fifo_does_not_wait(scene: Scene) -> None:
    fifo = scene.manifest.with_name("fifo.json")
    os.mkfifo(fifo)

    proc = run_goldsmith("outdated", str(scene.spec), "--manifest", str(fifo))

    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and str(fifo) in proc.stderr
    assert "not a regular file" in proc.stderr


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_outdated_with_a_device_is_one_line_exit_2(scene: Scene, device: str) -> None:
    one_line_error(outdated_cli(Path(device), scene.manifest))
    assert "not a regular file" in one_line_error(outdated_cli(scene.spec, Path(device)))


def _envelope_text(payload: bytes) -> str:
    return json.dumps(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "ee" * 32, "sig": base64.b64encode(bytes(64)).decode()}],
        }
    )


def _statement_with(scene: Scene, edit: Any) -> bytes:
    doc = json.loads(base64.b64decode(json.loads(scene.manifest.read_text())["payload"]))
    edit(doc)
    return json.dumps(doc).encode()


HOSTILE_MANIFESTS: list[Any] = [
    pytest.param(lambda s: b"\xff\xfe not utf-8", id="not-utf8"),
    pytest.param(lambda s: b'{"payloadType": "x", "payload": ', id="truncated"),
    pytest.param(lambda s: b"[" * 100_000 + b"]" * 100_000, id="deep-envelope"),
    pytest.param(lambda s: b'{"payload": 1' + b"0" * 5000 + b"}", id="huge-int-envelope"),
    pytest.param(
        lambda s: (
            b'{"payloadType": "application/vnd.in-toto+json", "payload": "e30=", '
            b'"payload": "W10=", "signatures": [{"keyid": "k", "sig": "AAAA"}]}'
        ),
        id="duplicate-payload-key",
    ),
    pytest.param(lambda s: _envelope_text(b"not json").encode(), id="payload-not-json"),
    pytest.param(lambda s: _envelope_text(b"[" * 100_000).encode(), id="payload-deep"),
    pytest.param(lambda s: _envelope_text(b'{"a": ' + b"9" * 5000 + b"}").encode(), id="big-int"),
    pytest.param(
        lambda s: _envelope_text(b'{"_type": 1, "_type": 2}').encode(), id="payload-dup-keys"
    ),
    pytest.param(
        lambda s: _envelope_text(b'{"_type": "\\ud800"}').encode(), id="payload-lone-surrogate"
    ),
    pytest.param(lambda s: _envelope_text(b'{"a": NaN}').encode(), id="payload-nan"),
    pytest.param(
        lambda s: _envelope_text(_statement_with(s, lambda d: d.update(predicate=[1, 2]))).encode(),
        id="predicate-list",
    ),
    pytest.param(
        lambda s: _envelope_text(
            _statement_with(s, lambda d: d["predicate"]["sbom"].update(packages="all of them"))
        ).encode(),
        id="sbom-packages-string",
    ),
    pytest.param(
        lambda s: _envelope_text(
            _statement_with(
                s, lambda d: d["predicate"]["sbom"]["packages"].append({"name": 7, "version": 1})
            )
        ).encode(),
        id="package-name-int",
    ),
    pytest.param(
        lambda s: _envelope_text(
            _statement_with(
                s, lambda d: d["predicate"]["template"].update(name="x\x1b]0;pwned\x07")
            )
        ).encode(),
        id="template-name-escape-sequence",
    ),
]


@pytest.mark.parametrize("content", HOSTILE_MANIFESTS)
def test_outdated_with_a_hostile_manifest_is_one_line_exit_2(scene: Scene, content: Any) -> None:
    scene.manifest.write_bytes(content(scene))

    line = one_line_error(outdated_cli(scene.spec, scene.manifest))

    assert str(scene.manifest) in line


def test_document_text_reaches_the_terminal_escaped(scene: Scene) -> None:
    # Not an error: the version is only displayed, and shown escaped.
    scene.write(version="1.0.0\x1b[2J\r\u202e")
    result = outdated_cli(scene.spec, scene.manifest)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    assert "\u202e" not in result.stdout
    assert "1.0.0\\x1b[2J\\x0d\\u202e" in result.stdout


def test_a_fifo_as_the_build_record_is_skipped(scene: Scene) -> None:
    # Without recipe inputs in the manifest, outdated looks at build.json beside it.
    base = {
        "name": "debian-bookworm-debootstrap",
        "uri": scene.mirror.debian,
        "source": "debootstrap",
        "digest": {"sha256": "12" * 32},
    }
    scene.write(base=base, spec_sha256=load_spec(scene.spec).sha256)
    os.mkfifo(scene.manifest.parent / "build.json")

    proc = run_goldsmith("outdated", str(scene.spec), "--manifest", str(scene.manifest))

    assert proc.returncode in (0, 1), proc.stderr
    assert "recipe inputs are not recorded" in proc.stdout


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--suite", "../../etc"),
        ("--suite", "bookworm\nx"),
        ("--mirror", "file:///etc"),
        ("--mirror", "http://h/d\ndeb [trusted=yes] http://evil/ x"),
        ("--security-mirror", "http://user:pw@h/d"),
    ],
)
def test_outdated_options_are_checked_like_a_spec(scene: Scene, option: str, value: str) -> None:
    args = ["--suite", "bookworm", option, value]
    line = one_line_error(outdated_cli(scene.spec, scene.manifest, *args))
    assert option in line


# --- hostile mirrors: bounded, exit 3 ------------------------------------------------------


def test_an_index_of_absurd_versions_is_no_traceback(scene: Scene) -> None:
    scene.mirror.publish(
        "debian",
        "bookworm",
        [
            ("openssl", "9" * 10_000 + ":1", "amd64"),
            ("openssl", "3.0.11-1~deb12u2" + "9" * 10_000, "amd64"),
            ("openssl", "3.0.11-1~deb12u2+" + "1" * 10_000, "amd64"),
            ("libc6", "\x1b[2J", "amd64"),
        ],
    )
    result = outdated_cli(scene.spec, scene.manifest)
    assert result.exit_code == 1, result.output
    assert "\x1b" not in result.stdout


def test_an_index_that_never_ends_is_cut(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    # Empty gzip members decompress to nothing, forever: the compressed bytes are bounded too.
    import builder.mirror_index

    monkeypatch.setattr(builder.mirror_index, "MAX_INDEX_BYTES", 10_000)
    folder = scene.mirror.root / "debian/dists/bookworm/main/binary-amd64"
    (folder / "Packages.xz").unlink()
    (folder / "Packages.gz").write_bytes(gzip.compress(b"") * 2000)

    line = one_line_error(outdated_cli(scene.spec, scene.manifest), code=3)
    assert "larger than" in line


def test_an_index_past_its_deadline_is_cut(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    import builder.mirror_index

    monkeypatch.setattr(builder.mirror_index, "INDEX_DEADLINE", -1)
    line = one_line_error(outdated_cli(scene.spec, scene.manifest), code=3)
    assert "not read within" in line


class _RedirectToFtp(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", "ftp://127.0.0.1/debian/Packages")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_redirect_away_from_http_is_refused(tmp_path: Path, scene: Scene) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RedirectToFtp)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/debian"
        args = ["--suite", "bookworm", "--mirror", url, "--security-mirror", url]
        image = tmp_path / "base.img"
        image.write_bytes(b"image")
        spec = file_spec(tmp_path, image, "ab" * 32)
        doc = statement(
            spec_sha256=load_spec(spec).sha256,
            profile_digest=load_profile("baseline").digest,
            base={"name": "b", "uri": "u", "source": "file", "digest": {"sha256": "ab" * 32}},
        )
        manifest = write_envelope(tmp_path / "m.json", doc)
        line = one_line_error(outdated_cli(spec, manifest, *args), code=3)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    # urllib alone would follow a redirect to ftp://; goldsmith's opener does not.
    assert "redirect to a scheme other than http or https" in line


def test_changed_provisioning_input_is_named(scene: Scene) -> None:
    folder = scene.spec.parent
    (folder / "files").mkdir()
    (folder / "files/site.conf").write_text("listen 80;\n")
    (folder / "files/ca.crt").write_text("ca\n")
    scene.spec.write_text(
        scene.spec.read_text()
        + "provision:\n"
        + "  - file: {source: files/site.conf, destination: /etc/nginx/site.conf}\n"
        + "  - file: {source: files/ca.crt, destination: /usr/local/share/ca.crt}\n"
    )
    spec = load_spec(scene.spec)
    recorded = [step.record() for step in spec.provision]
    scene.write(provision=recorded)
    assert kinds(check_outdated(scene.spec, scene.manifest, now=NOW)) == []
    (folder / "files/site.conf").write_text("listen 81;\n")
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    assert kinds(report) == [ReasonKind.provision]
    assert report.reasons[0].message.startswith(
        "provisioning input changed: files/site.conf has sha256 "
    )
    scene.write(provision=[recorded[0]])
    report = check_outdated(scene.spec, scene.manifest, now=NOW)
    messages = [r.message for r in report.reasons]
    assert "provisioning input added: files/ca.crt" in messages
