"""Issue: applying a profile a second time, in a live guest of the template it
built, changes nothing. The apply script says per control whether it changed
the guest (``goldsmith: changed <id>`` / ``unchanged <id>``); a control that
changes something again either fights another control or undoes first-boot
state, and both would make the template drift from its proof."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.cloudinit import wait_script
from builder.record import read_build_record
from builder.spec import load_spec
from builder.ssh import Session
from hardening.apply import render_apply_script
from hardening.profile import load_profile
from validate.boot import VALIDATOR_USER, boot_artifact

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]
CHANGED = "goldsmith: changed "
UNCHANGED = "goldsmith: unchanged "


def reapply(artifact: Path, spec: Path) -> tuple[list[str], list[str], str]:
    """Boot ``artifact`` as a deployer would, run its profile's apply script
    once more as root; the ids reported changed and unchanged, and the output."""
    record = read_build_record(artifact / "build.json")
    with boot_artifact(artifact / "disk.qcow2", firmware=record.firmware, tpm=record.tpm) as guest:
        session = Session(guest.client)
        # First boot's cloud-init stages (keys, sudoers, sshd drop-in) finish first.
        session.run(wait_script(900), step="cloud-init")
        return reapply_in(session, spec)


def reapply_in(session: Session, spec: Path) -> tuple[list[str], list[str], str]:
    """Run ``spec``'s profile's apply script once more, as root, in a guest
    already booted from its template; what it reports changed and unchanged."""
    script = render_apply_script(load_profile(load_spec(spec).profile))
    remote = f"/home/{VALIDATOR_USER}/goldsmith-apply.sh"
    session.put(script.encode(), remote)
    result = session.run(
        f"bash -euo pipefail {remote}", step="apply again", timeout=1800, check=False
    )
    assert result.ok, result.output[-4000:]
    lines = result.output.splitlines()
    changed = [line[len(CHANGED) :] for line in lines if line.startswith(CHANGED)]
    unchanged = [line[len(UNCHANGED) :] for line in lines if line.startswith(UNCHANGED)]
    return changed, unchanged, result.output


def test_applying_cis_level1_again_changes_nothing(cis_artifact: Path) -> None:
    spec = REPO / "templates/debian-12-cis-level1.yaml"
    changed, unchanged, output = reapply(cis_artifact, spec)
    profile = load_profile(load_spec(spec).profile)
    waived = {sc.id for sc in profile.controls if sc.waiver is not None and sc.waiver.active()}
    # Every applied control reported, so silence cannot pass for "unchanged".
    assert len(unchanged) >= len(profile.controls) - len(waived) - 5, output[-4000:]
    assert changed == [], output[-4000:]
