"""The user's own testinfra files, run against the same booted guest.

They are plain pytest files using the ``host`` fixture. pytest runs in this
process with a plugin that provides ``host`` (our pinned connection) and
collects each test's outcome as a CheckResult in area "user".
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.log import log
from hardening.host import Host
from hardening.results import CheckResult, Status


class _UserTestsPlugin:
    def __init__(self, host: Host) -> None:
        self._host = host
        self.results: dict[str, CheckResult] = {}
        self.collect_errors: list[str] = []

    @pytest.fixture(name="host")
    def host_fixture(self) -> Host:
        return self._host

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(f"{report.nodeid}: {report.longreprtext[-500:]}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # The call phase decides; a failing setup or teardown makes it an error.
        if report.when != "call" and report.passed:
            return
        if report.skipped:
            status = Status.skipped
            observed = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        elif report.passed:
            status, observed = Status.passed, "passed"
        elif report.when == "call":
            status, observed = Status.failed, report.longreprtext.strip()[-800:]
        else:
            status, observed = Status.error, f"{report.when}: {report.longreprtext[-800:]}"
        self.results[report.nodeid] = CheckResult(
            id=report.nodeid,
            title=report.nodeid.split("::")[-1],
            area="user",
            status=status,
            expected="test passes",
            observed=observed,
            reason=observed if status is Status.skipped else "",
            duration=round(report.duration, 3),
        )


def run_user_tests(host: Host, paths: Sequence[Path]) -> tuple[list[CheckResult], float]:
    for path in paths:
        if not path.exists():
            raise InputError(path, None, "a testinfra test file or folder (not found)")
    if not paths:
        return [], 0.0
    plugin = _UserTestsPlugin(host)
    start = time.monotonic()
    args = [
        *(str(p) for p in paths),
        *("-p", "no:cacheprovider", "-p", "no:pytest11.testinfra", "-q", "--no-header"),
        *("-o", "addopts=", "--rootdir", str(paths[0].resolve().parent)),
    ]
    # pytest prints its report on stdout, which carries goldsmith's results: keep it in the log.
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        pytest.main(args, plugins=[plugin])
    log.debug("user tests:\n%s", output.getvalue())
    results = list(plugin.results.values())
    for error in plugin.collect_errors:
        results.append(
            CheckResult(
                id=error.split(":")[0] or "collection",
                title="collecting user tests",
                area="user",
                status=Status.error,
                expected="test file imports and collects",
                observed=error,
            )
        )
    return results, time.monotonic() - start
