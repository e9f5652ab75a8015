"""apt-signed-repositories, run for real: its check script executed with bash
on scratch copies of /etc/apt and dpkg's file list for debian-archive-keyring.

The stock case is what a Debian 12 base bootstrapped by goldsmith holds: three
plain deb lines verified by the keys debian-archive-keyring puts in
trusted.gpg.d (file names as the bookworm package ships them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hardening.catalog import load_catalog
from hardening.facts import Facts, Section
from hardening.mechanisms import MECHANISMS
from hardening.profile import load_profile
from hardening.results import Status

CONTROL = "apt-signed-repositories"
STOCK_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main\n"
    "deb http://deb.debian.org/debian bookworm-updates main\n"
    "deb http://deb.debian.org/debian-security bookworm-security main\n"
)
ARCHIVE_KEYS = [
    f"debian-archive-{suite}-{kind}.asc"
    for suite in ("bookworm", "bullseye", "trixie")
    for kind in ("automatic", "security-automatic", "stable")
]
APT_CONF = 'DPkg::Pre-Install-Pkgs {"/usr/sbin/dpkg-preconfigure --apt || true";};\n'


def stock_root(root: Path) -> Path:
    """A scratch root whose apt configuration is a stock Debian 12 one."""
    apt = root / "etc" / "apt"
    (apt / "trusted.gpg.d").mkdir(parents=True)
    (apt / "sources.list.d").mkdir()
    (apt / "apt.conf.d").mkdir()
    (apt / "sources.list").write_text(STOCK_SOURCES)
    (apt / "apt.conf.d" / "70debconf").write_text(APT_CONF)
    owned = ["/.", "/etc", "/etc/apt", "/etc/apt/trusted.gpg.d"]
    for name in ARCHIVE_KEYS:
        (apt / "trusted.gpg.d" / name).write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
        owned.append(f"{apt}/trusted.gpg.d/{name}")
    owned += ["/usr/share/keyrings", "/usr/share/keyrings/debian-archive-keyring.gpg"]
    info = root / "var" / "lib" / "dpkg" / "info"
    info.mkdir(parents=True)
    (info / "debian-archive-keyring.list").write_text("\n".join(owned) + "\n")
    return apt


def check(root: Path) -> tuple[Status, str, str]:
    """The control's probe run against ``root`` and judged as validation would:
    status, observed, and the probe's whole output."""
    control = load_catalog()[CONTROL]
    mechanism = MECHANISMS[control.mechanism]
    spec = mechanism.parse(control.resolve_params({}))
    (probe,) = mechanism.probes(spec)
    command = probe.command.replace("/etc/apt", f"{root}/etc/apt").replace(
        "/var/lib/dpkg", f"{root}/var/lib/dpkg"
    )
    done = subprocess.run(
        ["bash", "-c", "shopt -s nullglob\n" + command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert not done.stderr, done.stderr
    outcome = mechanism.evaluate(spec, Facts({probe.name: Section(done.returncode, done.stdout)}))
    return outcome.status, outcome.observed, done.stdout


def test_the_baseline_selects_it() -> None:
    assert CONTROL in {sc.id for sc in load_profile("baseline").controls}
    assert load_catalog()[CONTROL].area == "apt"


def test_passes_on_a_stock_debian_12_base(tmp_path: Path) -> None:
    stock_root(tmp_path)
    assert check(tmp_path)[:2] == (Status.passed, "(no output)")


@pytest.mark.parametrize(
    ("file", "text"),
    [
        ("sources.list", "deb [trusted=yes] http://deb.example.net/debian bookworm main\n"),
        ("sources.list", "deb [ arch=amd64 Trusted=yes ] http://deb.example.net/x bookworm main\n"),
        ("sources.list.d/x.list", "deb-src [trusted=yes] http://deb.example.net/x bookworm main\n"),
        (
            "sources.list.d/x.list",
            "deb [allow-insecure=yes] http://deb.example.net/x stable main\n",
        ),
        ("sources.list.d/x.list", "deb [allow-weak=yes] http://deb.example.net/x stable main\n"),
        (
            "sources.list.d/x.sources",
            "Types: deb\nURIs: http://deb.example.net/x\nSuites: stable\n"
            "Components: main\nTrusted: yes\n",
        ),
        (
            "sources.list.d/x.sources",
            "Types: deb\nURIs: http://a.example.net/x\nSuites: stable\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/a.gpg\n\n"
            "Types: deb\nURIs: http://b.example.net/x\nSuites: stable\nComponents: main\n"
            "Allow-Insecure: yes\nSigned-By: /usr/share/keyrings/b.gpg\n",
        ),
        ("apt.conf.d/99insecure", 'APT::Get::AllowUnauthenticated "true";\n'),
    ],
)
def test_fails_on_an_unverified_source(tmp_path: Path, file: str, text: str) -> None:
    apt = stock_root(tmp_path)
    with (apt / file).open("a") as f:
        f.write(text)
    status, observed, _ = check(tmp_path)
    assert status is Status.failed
    assert "1 found" in observed


def test_a_foreign_key_in_the_system_keyring_needs_signed_by_everywhere(tmp_path: Path) -> None:
    apt = stock_root(tmp_path)
    (apt / "trusted.gpg.d" / "vendor.gpg").write_bytes(b"\x99")
    status, observed, output = check(tmp_path)
    # Debian's own lines are now verified by a keyring that also trusts the vendor.
    assert status is Status.failed
    assert "3 found" in observed and "no signed-by" in observed
    assert output.count("trusted.gpg.d/vendor.gpg\n") == 3
    (apt / "sources.list").write_text(
        STOCK_SOURCES.replace("deb ", "deb [signed-by=/usr/share/keyrings/debian.gpg] ")
    )
    assert check(tmp_path)[0] is Status.passed
    # The legacy keyring is never a debian-archive-keyring file.
    (apt / "trusted.gpg").write_bytes(b"\x99")
    (apt / "sources.list.d" / "v.list").write_text("deb http://deb.example.net/v stable main\n")
    status, observed, output = check(tmp_path)
    assert status is Status.failed and "1 found" in observed
    assert "/etc/apt/trusted.gpg " in output and "deb.example.net/v" in output


def test_signed_third_party_and_disabled_sources_pass(tmp_path: Path) -> None:
    apt = stock_root(tmp_path)
    (apt / "sources.list.d" / "vendor.list").write_text(
        "# deb [trusted=yes] http://old.example.net/x stable main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/vendor.gpg] https://deb.example.net/x"
        " stable main # trusted=yes in a comment\n"
    )
    (apt / "sources.list.d" / "vendor.sources").write_text(
        "Types: deb\nURIs: https://deb.example.net/y\nSuites: stable\nComponents: main\n"
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n"
        " -----END PGP PUBLIC KEY BLOCK-----\n"
        "\n# A disabled stanza is not used by apt.\n"
        "Types: deb\nURIs: http://deb.example.net/z\nSuites: stable\nComponents: main\n"
        "Enabled: no\nTrusted: yes\n"
    )
    (apt / "sources.list.d" / "old.list.disabled").write_text("deb [trusted=yes] http://x/ y z\n")
    assert check(tmp_path)[:2] == (Status.passed, "(no output)")
