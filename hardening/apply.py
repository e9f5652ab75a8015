"""The apply side of a whole profile: one idempotent bash script."""

from __future__ import annotations

from datetime import date

from hardening.mechanisms import MECHANISMS
from hardening.profile import Profile, SelectedControl
from hardening.shell import EPILOGUE, PRELUDE, q


def condition_met_by_parameters(profile: Profile, selected: SelectedControl) -> bool:
    """False when the control depends on a parameter the profile leaves empty."""
    condition = selected.control.only_if
    if condition is None or not condition.param_set:
        return True
    return bool(profile.parameters.get(condition.param_set))


def _guard(selected: SelectedControl, body: str) -> str:
    condition = selected.control.only_if
    if condition is None or not condition.installed or not body.strip():
        return body
    # Not indented: the body may hold here-documents whose terminators must
    # stay at the start of a line.
    return f"if gs_pkg_installed {q(condition.installed)}; then\n{body}\nfi"


def render_apply_script(profile: Profile, today: date | None = None) -> str:
    """One bash script applying every control that is not under an active waiver.

    Run as root with ``bash -euo pipefail``. It prints ``goldsmith: changed <id>``
    or ``goldsmith: unchanged <id>`` per control, then reloads what changed
    (sysctl, grub, audit rules, and sshd after ``sshd -t``).
    """
    parts = [f"# profile {profile.id} {profile.version} ({profile.digest})", PRELUDE]
    ordered = sorted(
        enumerate(profile.controls),
        key=lambda pair: (MECHANISMS[pair[1].control.mechanism].phase, pair[0]),
    )
    for _, selected in ordered:
        if selected.waiver is not None and selected.waiver.active(today):
            parts.append(f"# {selected.id}: waived ({selected.waiver.reason})")
            continue
        if not condition_met_by_parameters(profile, selected):
            parts.append(f"# {selected.id}: not applicable ({selected.control.only_if})")
            continue
        mechanism = MECHANISMS[selected.control.mechanism]
        body = _guard(selected, mechanism.render(mechanism.parse(selected.params)))
        parts.append(f"gs_begin {q(selected.id)}\n{body.rstrip()}\ngs_end")
    parts.append(EPILOGUE)
    return "\n".join(parts) + "\n"
