"""The shipped catalog and profiles, and how bad profile input is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardening.catalog import load_catalog
from hardening.errors import ProfileError
from hardening.mechanisms import MECHANISMS
from hardening.profile import list_profiles, load_profile


def test_catalog_ids_unique_and_referenced() -> None:
    catalog = load_catalog()
    assert len(set(catalog)) == len(catalog)
    for control in catalog.values():
        refs = control.references
        assert refs.cis or refs.devsec or refs.no_reference_reason, control.id
        if refs.cis:
            assert refs.cis_level in (1, 2)
        assert control.title and control.rationale and control.area


def test_every_mechanism_params_validate() -> None:
    for control in load_catalog().values():
        mechanism = MECHANISMS[control.mechanism]
        mechanism.parse(control.resolve_params(control.parameters))


@pytest.mark.parametrize("name", list_profiles())
def test_every_profile_resolves(name: str) -> None:
    profile = load_profile(name)
    assert profile.id == name
    assert profile.digest.startswith("sha256:") and len(profile.digest) == 71
    assert profile.controls
    for sc in profile.controls:
        if sc.waiver is not None:
            assert sc.waiver.reason.strip()
    # Resolution is deterministic.
    assert load_profile(name).digest == profile.digest


def test_baseline_spans_the_mechanisms() -> None:
    profile = load_profile("baseline")
    used = {sc.control.mechanism for sc in profile.controls}
    assert {"sysctl", "sshd", "kmod", "package_absent", "file_perm", "login_defs"} <= used
    assert len(profile.controls) >= 12


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_user_profile_extends_and_sets_parameters(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "id: mine\nversion: 2.0.0\nextends: baseline\nexclude: [kmod-hfs]\n"
        "controls: [logindefs-pass-max-days]\nparameters: {pass_max_days: 90}\n",
    )
    profile = load_profile(path)
    ids = [sc.id for sc in profile.controls]
    assert "kmod-hfs" not in ids and "logindefs-pass-max-days" in ids
    chosen = next(sc for sc in profile.controls if sc.id == "logindefs-pass-max-days")
    assert chosen.params["settings"][0]["value"] == 90
    assert profile.parameters["pass_max_days"] == 90
    assert profile.digest != load_profile("baseline").digest


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("id: x\nversion: '1'\nextend: baseline\n", "extend", 'did you mean "extends"'),
        ("id: x\nversion: '1'\ncontrols: [ssh-root-logins]\n", "controls[0]", "ssh-root-login"),
        (
            "id: x\nversion: '1'\nextends: baseline\nparameters: {pass_max_dayz: 1}\n",
            "parameters.pass_max_dayz",
            "pass_max_days",
        ),
        (
            "id: x\nversion: '1'\nextends: baseline\nparameters: {ssh_max_auth_tries: four}\n",
            "parameters.ssh_max_auth_tries",
            "an integer",
        ),
        (
            "id: x\nversion: '1'\nextends: baseline\nwaivers: [{control: kernel-aslr}]\n",
            "waivers[0].reason",
            "non-empty reason",
        ),
        (
            "id: x\nversion: '1'\nextends: baseline\n"
            "waivers: [{control: kernel-aslr, reason: r, expires: soon}]\n",
            "waivers[0].expires",
            "a date",
        ),
        ("id: x\nversion: '1'\nextends: nosuch\n", "extends", "no such profile"),
        ("version: '1'\ncontrols: [kernel-aslr]\n", "id", "required"),
    ],
)
def test_bad_profiles_name_file_field_and_expectation(
    tmp_path: Path, text: str, field: str, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.field == field
    assert fragment in error.expected
    assert str(error).startswith(f"{path}: {field}: ")


def test_waiver_for_unselected_control_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "id: x\nversion: '1'\ncontrols: [kernel-aslr]\n"
        "waivers: [{control: ssh-root-login, reason: r}]\n",
    )
    with pytest.raises(ProfileError, match="not selected"):
        load_profile(path)


def test_extends_cycle_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "id: a\nversion: '1'\nextends: b.yaml\n", "a.yaml")
    write(tmp_path, "id: b\nversion: '1'\nextends: a.yaml\n", "b.yaml")
    with pytest.raises(ProfileError, match="no cycle"):
        load_profile(tmp_path / "a.yaml")


def test_unknown_shipped_name() -> None:
    with pytest.raises(ProfileError, match=r"shipped: .*baseline"):
        load_profile("basline")
