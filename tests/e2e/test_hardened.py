"""Issue: the hardened-server template (CIS level 2 server, dev-sec's linux and
SSH baselines, ANSSI BP-028 intermediary) builds, and a fresh boot proves every
control that is not waived; a deployer still gets in with the key cloud-init
gives it and uses sudo, and applying the profile again changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import only_result
from test_idempotency import reapply_in

from builder.cloudinit import wait_script
from builder.record import read_build_record
from builder.ssh import Session
from hardening.profile import load_profile
from validate.boot import VALIDATOR_USER, boot_artifact

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "templates/debian-12-hardened.yaml"
NOT_CONTROLS = frozenset({"hygiene", "user", "platform"})


def test_hardened_release_passes_every_non_waived_control(
    hardened_artifact: Path, signing_key: Path, goldsmith_json: Callable[..., Any]
) -> None:
    released = only_result(
        goldsmith_json(
            "release", SPEC, "--key", signing_key, "--out", hardened_artifact.parent, "--json"
        )
    )
    assert released["validated"] is True
    run = json.loads((hardened_artifact / "validation.json").read_text())
    assert run["profile"]["id"] == "hardened-server"
    controls = [r for r in run["results"] if r["area"] not in NOT_CONTROLS]
    # Every control of the profile has a result: none is silently left out.
    profile = load_profile("hardened-server")
    assert {r["id"] for r in controls} >= {sc.id for sc in profile.controls}
    assert len(controls) >= 280
    bad = [(r["id"], r["observed"]) for r in controls if r["status"] in ("failed", "error")]
    assert bad == []
    passed = [r for r in controls if r["status"] == "passed"]
    assert len(passed) >= 0.9 * len(controls), f"{len(passed)} of {len(controls)} passed"
    # A waiver or a skip is never silent: each carries its reason.
    quiet = [r["id"] for r in controls if r["status"] in ("waived", "skipped") and not r["reason"]]
    assert quiet == []
    others = [(r["id"], r["status"]) for r in run["results"] if r["area"] in NOT_CONTROLS]
    assert others and all(status in ("passed", "skipped") for _, status in others), others
    verdict = goldsmith_json("verify", hardened_artifact, "--key", f"{signing_key}.pub", "--json")
    assert verdict["trusted"] is True


@pytest.fixture(scope="module")
def hardened_guest(hardened_artifact: Path) -> Iterator[Session]:
    """One deployer boot of the hardened template (a throwaway overlay, a
    fresh seed), shared by the deployer's checks and then the second apply:
    each boot costs minutes under emulation."""
    record = read_build_record(hardened_artifact / "build.json")
    with boot_artifact(
        hardened_artifact / "disk.qcow2", firmware=record.firmware, tpm=record.tpm
    ) as guest:
        session = Session(guest.client)
        session.run(wait_script(900), step="cloud-init")
        yield session


def test_deployer_logs_in_with_its_key_and_uses_sudo_on_hardened(
    hardened_guest: Session,
) -> None:
    """What a server must still do under the strictest profile: the deployer's
    key (from a fresh NoCloud seed) lets it in, sudo works without a password,
    apt reads its sources and the journal records the login; and a command
    run over SSH gets the profile's umask, not the compiled-in 022."""
    session = hardened_guest
    who = session.run("id -un", step="who", check=False, sudo=False)
    root = session.run("sudo -n id -u", step="sudo", check=False, sudo=False)
    # A command over SSH is no login shell: only pam_umask gives it the umask.
    umask = session.run("umask", step="umask", check=False, sudo=False)
    apt = session.run("apt-get -s -o Debug::NoLocking=1 check", step="apt", check=False)
    logged = session.run(
        f"journalctl -q --no-pager -u ssh -g 'Accepted publickey for {VALIDATOR_USER} '",
        step="journal",
        check=False,
    )
    assert who.ok and who.output.strip() == VALIDATOR_USER, who.output
    assert root.ok and root.output.strip() == "0", root.output
    # login.defs' UMASK 027 (007 for a user whose own group is its primary
    # one, as USERGROUPS_ENAB says): never the compiled-in 022.
    assert umask.ok and umask.output.strip() in ("0027", "0007"), umask.output
    assert apt.ok, apt.output[-2000:]
    assert logged.ok and VALIDATOR_USER in logged.output, logged.output[-2000:]


def test_applying_hardened_again_changes_nothing(hardened_guest: Session) -> None:
    """Runs after the deployer's checks, in the same boot: the second apply
    comes last because it is the one that could change the guest."""
    changed, unchanged, output = reapply_in(hardened_guest, SPEC)
    profile = load_profile("hardened-server")
    waived = {sc.id for sc in profile.controls if sc.waiver is not None and sc.waiver.active()}
    assert len(unchanged) >= len(profile.controls) - len(waived) - 5, output[-4000:]
    assert changed == [], output[-4000:]
