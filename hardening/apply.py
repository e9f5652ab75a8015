"""The apply side of a whole profile: one idempotent bash script."""

from __future__ import annotations

from datetime import date

from hardening.mechanisms import MECHANISMS
from hardening.profile import Profile, SelectedControl
from hardening.shell import DONE, PRELUDE, RELOADS, q
from hardening.strictdata import escape


def condition_met_by_parameters(profile: Profile, selected: SelectedControl) -> bool:
    """False when the control depends on a parameter the profile leaves empty."""
    condition = selected.control.only_if
    if condition is None or not condition.param_set:
        return True
    return bool(profile.parameters.get(condition.param_set))


def _guard(selected: SelectedControl, body: str) -> str:
    condition = selected.control.only_if
    if condition is not None and condition.installed and body.strip():
        # Not indented: the body may hold here-documents whose terminators must
        # stay at the start of a line.
        body = f"if gs_pkg_installed {q(condition.installed)}; then\n{body}\nfi"
    if selected.not_on:
        # The release is the guest's own: one script serves every release.
        releases = " ".join(q(r) for r in sorted(selected.not_on))
        note = q("not applicable on this Debian release")
        body = f"if gs_release_in {releases}; then\n  gs_note {note}\nelse\n{body}\nfi"
    return body


def _applies(profile: Profile, selected: SelectedControl, today: date | None) -> bool:
    waived = selected.waiver is not None and selected.waiver.active(today)
    return not waived and condition_met_by_parameters(profile, selected)


def needed_packages(profile: Profile, today: date | None = None) -> list[str]:
    """Every package an applied control needs (``needs``) or installs
    (package_present), in first-use order: installed in one apt-get run before
    the controls that configure, enable or check them."""
    packages: dict[str, None] = {}
    for selected in profile.controls:
        if not _applies(profile, selected, today):
            continue
        control = selected.control
        if control.only_if is not None and control.only_if.installed:
            continue  # applies only when the package is already there
        if selected.not_on:
            continue  # not on every release: its own guarded step installs them
        packages.update(dict.fromkeys(control.needs))
        if control.mechanism == "package_present":
            packages.update(dict.fromkeys(selected.params["packages"]))
    return list(packages)


PACKAGES_STEP = "packages"
# Packages are installed after removals (phase 10) so a purge can never take
# away what the profile needs without the check noticing, and before every
# control that edits their files.
PACKAGES_PHASE = 15
# Controls from this phase on run after the reloads, on the finished system
# (an integrity baseline, say, must see grub.cfg as update-grub left it).
AFTER_RELOADS = 90


def phase(selected: SelectedControl) -> int:
    """When a control is applied: its own phase, else its mechanism's."""
    control = selected.control
    return control.phase if control.phase is not None else MECHANISMS[control.mechanism].phase


def render_apply_script(profile: Profile, today: date | None = None) -> str:
    """One bash script applying every control that is not under an active waiver.

    Run as root with ``bash -euo pipefail``. It prints ``goldsmith: changed <id>``
    or ``goldsmith: unchanged <id>`` per control, then reloads what changed
    (sysctl, grub, audit rules, and sshd after ``sshd -t``).
    """
    parts = [f"# {_comment(f'profile {profile.id} {profile.version} ({profile.digest})')}", PRELUDE]
    ordered = sorted(
        enumerate(profile.controls),
        key=lambda pair: (phase(pair[1]), pair[0]),
    )
    packages = needed_packages(profile, today)
    pending = bool(packages)
    reloaded = False
    for _, selected in ordered:
        if pending and phase(selected) > PACKAGES_PHASE:
            parts.append(_packages_step(packages))
            pending = False
        if not reloaded and phase(selected) >= AFTER_RELOADS:
            parts.append(RELOADS)
            reloaded = True
        if selected.waiver is not None and selected.waiver.active(today):
            parts.append(f"# {_comment(f'{selected.id}: waived ({selected.waiver.reason})')}")
            continue
        if not condition_met_by_parameters(profile, selected):
            parts.append(
                f"# {_comment(f'{selected.id}: not applicable ({selected.control.only_if})')}"
            )
            continue
        mechanism = MECHANISMS[selected.control.mechanism]
        body = mechanism.render(mechanism.parse(selected.params))
        if selected.control.needs:
            needs = " ".join(q(p) for p in selected.control.needs)
            body = f"gs_pkg_present {needs}\n{body}"
        body = _guard(selected, body)
        parts.append(f"gs_begin {q(selected.id)}\n{body.rstrip()}\ngs_end")
    if pending:
        parts.append(_packages_step(packages))
    if not reloaded:
        parts.append(RELOADS)
    parts.append(DONE)
    return "\n".join(parts) + "\n"


def _comment(text: str) -> str:
    """Text from a profile after ``#``: the loader admits only plain ids and
    versions, and escape() keeps even a line break that slipped past it from
    ending the comment and starting a command."""
    return escape(text, limit=1000)


def _packages_step(packages: list[str]) -> str:
    names = " ".join(q(p) for p in packages)
    return f"gs_begin {PACKAGES_STEP}\ngs_pkg_present {names}\ngs_end"
