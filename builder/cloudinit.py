"""Waiting for cloud-init to settle without starting its Python.

``cloud-init status --wait`` is one more Python process importing cloud-init;
under TCG that costs about 5 s of emulated CPU, spent while cloud-init's own
config and final stages need the same vCPUs. What it reports is what
cloud-init itself writes: ``/run/cloud-init/status.json`` after each stage and
``result.json`` once the final stage has ended. So the guest runs a small
shell loop until ``result.json`` exists (or the boot is over without it),
prints both files, and the host reads them (strictly: the guest is what is
being tested) into the same verdict ``cloud-init status`` gives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from hardening.strictdata import DataError, loads_json

STATUS_FILE = "/run/cloud-init/status.json"
RESULT_FILE = "/run/cloud-init/result.json"
STAGES = ("init-local", "init", "modules-init", "modules-config", "modules-final")
_STATUS_MARK = "--- status.json"
_RESULT_MARK = "--- result.json"
POLL_SECONDS = 0.2
# The boot's state is asked every fifth poll: a systemctl per second, not five.
_STATE_EVERY = 5


def wait_script(timeout: float) -> str:
    """Shell (POSIX sh) that returns once cloud-init has finished its final
    stage, or the boot has ended without it doing so, or ``timeout`` seconds
    have passed; then prints status.json and result.json after markers."""
    polls = max(1, int(timeout / POLL_SECONDS))
    return (
        "n=0; "
        f"while [ ! -e {RESULT_FILE} ] && [ $n -lt {polls} ]; do "
        "n=$((n + 1)); "
        f"if [ $((n % {_STATE_EVERY})) -eq 0 ]; then "
        'case "$(systemctl is-system-running 2>/dev/null)" in '
        "initializing|starting) ;; "
        f"*) [ -e {RESULT_FILE} ] || break ;; "
        "esac; "
        "fi; "
        f"sleep {POLL_SECONDS}; "
        "done; "
        f"echo '{_STATUS_MARK}'; cat {STATUS_FILE} 2>/dev/null; echo; "
        f"echo '{_RESULT_MARK}'; cat {RESULT_FILE} 2>/dev/null; echo"
    )


@dataclasses.dataclass(frozen=True)
class CloudInitStatus:
    """cloud-init's state as its own files tell it.

    ``status`` is what ``cloud-init status`` would print: ``done`` (the final
    stage ended, no stage reported an error), ``error``, ``running`` (a stage
    started and did not finish, or the final result is missing) or
    ``not run`` (no status file at all)."""

    status: str
    datasource: str = ""
    errors: tuple[str, ...] = ()
    recoverable: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.status == "done"

    def text(self) -> str:
        """``key: value`` lines, as ``cloud-init status --long`` prints them."""
        lines = [f"status: {self.status}"]
        if self.datasource:
            lines.append(f"detail: {self.datasource}")
        if self.errors:
            lines.append("errors: " + "; ".join(self.errors))
        if self.recoverable:
            lines.append("recoverable errors: " + "; ".join(self.recoverable))
        return "\n".join(lines)


def _section(output: str, mark: str, following: str | None) -> str:
    _, found, rest = output.partition(mark + "\n")
    if not found:
        raise DataError(f"no {mark.removeprefix('--- ')} section in the output")
    if following is not None:
        rest = rest.partition(following + "\n")[0]
    return rest.strip()


def _v1(text: str, name: str) -> Mapping[str, Any] | None:
    if not text:
        return None
    try:
        document = loads_json(text)
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from None
    v1 = document.get("v1") if isinstance(document, dict) else None
    if not isinstance(v1, dict):
        raise DataError(f"{name}: expected an object with a v1 object")
    return v1


def _strings(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DataError(f"{name}: expected a list")
    return tuple(str(item) for item in value)


def _recoverable(value: object, stage: str) -> tuple[str, ...]:
    # cloud-init 23.4 and later: {"WARNING": ["..."], "DEPRECATED": [...]}.
    if value is None or value == {}:
        return ()
    if not isinstance(value, dict):
        raise DataError(f"status.json: {stage}.recoverable_errors: expected an object")
    found: list[str] = []
    for level, messages in sorted(value.items()):
        found += [f"{stage} {level}: {m}" for m in _strings(messages, f"{stage}.{level}")]
    return tuple(found)


def parse_status(output: str) -> CloudInitStatus:
    """The status from what ``wait_script`` printed; DataError when the
    files are not what cloud-init writes."""
    status_v1 = _v1(_section(output, _STATUS_MARK, _RESULT_MARK), "status.json")
    result_v1 = _v1(_section(output, _RESULT_MARK, None), "result.json")
    if status_v1 is None and result_v1 is None:
        return CloudInitStatus("not run")
    errors: list[str] = []
    raw: set[str] = set()
    recoverable: list[str] = []
    unfinished = False
    for stage, state in (status_v1 or {}).items():
        # Each stage is an object (init-local, init, modules-init, -config,
        # -final in 22.4; a newer release may add stages); the other keys
        # (datasource, stage, ...) are not stages.
        if not isinstance(state, dict):
            if stage in STAGES:
                raise DataError(f"status.json: {stage}: expected an object")
            continue
        found = _strings(state.get("errors"), f"{stage}.errors")
        errors += [f"{stage}: {e}" for e in found]
        raw.update(found)
        recoverable += _recoverable(state.get("recoverable_errors"), stage)
        if state.get("start") and not state.get("finished"):
            unfinished = True
    datasource = ""
    if result_v1 is not None:
        # result.json repeats the stages' errors: only others are added.
        final = _strings(result_v1.get("errors"), "result.json errors")
        errors += [e for e in final if e not in raw]
        datasource = str(result_v1.get("datasource") or "")
    elif status_v1 is not None:
        datasource = str(status_v1.get("datasource") or "")
    unique = tuple(dict.fromkeys(errors))
    if unique:
        status = "error"
    elif result_v1 is None or unfinished:
        status = "running"
    else:
        status = "done"
    return CloudInitStatus(status, datasource, unique, tuple(recoverable))


def read_status(output: str) -> CloudInitStatus:
    """``parse_status``, with files that are not cloud-init's reported as
    such (status ``unreadable``) rather than raised: a verdict, not a crash."""
    try:
        return parse_status(output)
    except DataError as exc:
        return CloudInitStatus("unreadable", errors=(str(exc),))
