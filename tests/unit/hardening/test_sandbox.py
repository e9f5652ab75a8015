"""svc-auditd-sandbox: its check judges what systemctl reports for the running
unit, and its drop-in sets every property the check requires."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from test_custom_controls import fake_tool, run_bash

from hardening.catalog import load_catalog
from hardening.profile import load_profile

CONTROL = load_catalog()["svc-auditd-sandbox"]

# What systemd 252 prints for the sandboxed unit (systemctl show -p ...):
# booleans as yes/no, RestrictNamespaces=true as "yes", the families in set order.
GOOD = """\
ActiveState=active
ProtectSystem=yes
ProtectHome=read-only
ProtectKernelTunables=yes
ProtectKernelLogs=yes
ProtectKernelModules=yes
RestrictNamespaces=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_INET6 AF_UNIX AF_NETLINK AF_INET
"""


def run_check(tmp_path: Path, shown: str, rc: int = 0) -> str:
    (tmp_path / "bin").mkdir()
    path = fake_tool(tmp_path, "systemctl", shown, rc)
    result = run_bash(CONTROL.params["check"], path, tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_sandboxed_running_unit_passes(tmp_path: Path) -> None:
    assert run_check(tmp_path, GOOD) == ""


@pytest.mark.parametrize(
    ("line", "replacement", "reported"),
    [
        ("ActiveState=active", "ActiveState=failed", "ActiveState=failed"),
        ("ProtectSystem=yes", "ProtectSystem=no", "ProtectSystem=no"),
        ("ProtectHome=read-only", "ProtectHome=no", "ProtectHome=no"),
        ("RestrictNamespaces=yes", "RestrictNamespaces=net", "RestrictNamespaces=net"),
        ("SystemCallArchitectures=native", "SystemCallArchitectures=", "SystemCallArchitectures="),
        (
            "RestrictAddressFamilies=AF_INET6 AF_UNIX AF_NETLINK AF_INET",
            "RestrictAddressFamilies=~AF_PACKET",
            "RestrictAddressFamilies=~AF_PACKET",
        ),
        (
            "RestrictAddressFamilies=AF_INET6 AF_UNIX AF_NETLINK AF_INET",
            "RestrictAddressFamilies=AF_INET6 AF_UNIX AF_NETLINK AF_INET AF_PACKET",
            "RestrictAddressFamilies=AF_INET6 AF_UNIX AF_NETLINK AF_INET AF_PACKET",
        ),
        ("LockPersonality=yes", "", "LockPersonality not reported"),
    ],
)
def test_each_missing_or_weaker_property_is_reported(
    tmp_path: Path, line: str, replacement: str, reported: str
) -> None:
    shown = GOOD.replace(line + "\n", replacement + "\n" if replacement else "")
    assert reported in run_check(tmp_path, shown).splitlines()


def test_a_unit_systemctl_cannot_read_fails(tmp_path: Path) -> None:
    out = run_check(tmp_path, "Failed to connect to bus: No such file or directory\n", rc=1)
    assert "Failed to connect to bus: No such file or directory" in out.splitlines()
    assert "ActiveState not reported" in out.splitlines()


def test_the_drop_in_sets_what_the_check_requires() -> None:
    apply = CONTROL.params["apply"]
    body = apply.split("<<'UNIT'\n", 1)[1].split("\nUNIT", 1)[0]
    unit = configparser.ConfigParser(interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(body)
    service = dict(unit["Service"])
    shown = dict(line.split("=", 1) for line in GOOD.splitlines())
    assert set(service) == set(shown) - {"ActiveState"}
    systemd_yes = {"true": "yes", "read-only": "read-only", "native": "native"}
    for key, value in service.items():
        if key == "RestrictAddressFamilies":
            assert set(value.split()) == set(shown[key].split())
        else:
            assert systemd_yes[value] == shown[key], key
    assert "/etc/systemd/system/auditd.service.d/" in apply
    assert "0644 systemd <<'UNIT'" in apply  # reloads systemd after the change


def test_hardened_server_sandboxes_auditd_and_cis_profiles_do_not() -> None:
    def ids(name: str) -> set[str]:
        return {sc.control.id for sc in load_profile(name).controls}

    assert "svc-auditd-sandbox" in ids("hardened-server")
    for name in ("cis-level1-server", "cis-level2-server"):
        assert "svc-auditd-sandbox" not in ids(name)
