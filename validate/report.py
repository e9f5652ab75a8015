"""junit.xml and report.html: a validation run for CI and for the auditor.

Everything shown here came from a guest (observed values, package names) or
from a profile: it is untrusted text. The HTML goes through Jinja2 with
autoescaping on, and both outputs pass every string through ``printable()``
so control and bidirectional-override characters cannot corrupt the XML or
make the page read differently from what the evidence says.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from builder.atomic import write_atomically
from hardening.results import CheckResult, Status
from validate.results import PUBLISHED_MODE, ValidationRun

# C0/C1 controls other than tab, newline and carriage return are not allowed
# in XML 1.0 and are invisible in HTML; bidi overrides and isolates can reorder
# what a reader sees ("Trojan Source"). All are shown as visible escapes.
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufffe\uffff]"
)

# Areas that are not controls of the profile go last, in this order.
_TRAILING_AREAS = ("hygiene", "user")

_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


def printable(text: str) -> str:
    """Return ``text`` with unprintable or reordering characters as ``\\xNN``/``\\uNNNN``."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _UNPRINTABLE.sub(escape, text)


@dataclasses.dataclass(frozen=True)
class AreaSummary:
    """How one area fared: the counts per status and its pass rate."""

    area: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def applicable(self) -> int:
        """Results that decide approval: waived and skipped ones do not."""
        return self.counts["passed"] + self.counts["failed"] + self.counts["error"]

    @property
    def pass_rate(self) -> float | None:
        return self.counts["passed"] / self.applicable if self.applicable else None

    def share(self, status: str) -> float:
        """Percentage of this area's results with ``status`` (for the bar widths)."""
        return 100.0 * self.counts[status] / self.total if self.total else 0.0


def count_statuses(results: Iterable[CheckResult]) -> dict[str, int]:
    counts = {str(s): 0 for s in Status}
    for result in results:
        counts[str(result.status)] += 1
    return counts


def summarize_areas(results: Sequence[CheckResult]) -> list[AreaSummary]:
    """One summary per area: control areas in order of first appearance, then hygiene, user."""
    areas: dict[str, list[CheckResult]] = {}
    for result in results:
        areas.setdefault(result.area, []).append(result)
    order = [a for a in areas if a not in _TRAILING_AREAS]
    order += [a for a in _TRAILING_AREAS if a in areas]
    return [AreaSummary(area, count_statuses(areas[area])) for area in order]


def select_findings(results: Iterable[CheckResult]) -> list[CheckResult]:
    """Failed and error results, most severe first: what an auditor must read."""
    findings = [r for r in results if r.status in (Status.failed, Status.error)]
    return sorted(findings, key=lambda r: (_SEVERITY_ORDER.get(r.severity, 3), r.area, r.id))


def select_status(results: Iterable[CheckResult], status: Status) -> list[CheckResult]:
    return [r for r in results if r.status is status]


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_duration(seconds: float) -> str:
    """One check's time: a control is judged from gathered evidence in micro- to
    milliseconds, a user test runs for seconds; 0 means it was not timed on its
    own (hygiene, platform and image checks are judged together, as an area)."""
    if seconds <= 0:
        return "—"
    if seconds >= 60:
        return format_seconds(seconds)
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    return "< 0.01 ms" if ms < 0.01 else f"{ms:.3g} ms"


def format_time(value: str | None) -> str:
    """RFC 3339 as "2026-11-27 08:00:00 UTC"; anything unparsable is shown as given."""
    if not value:
        return "—"
    try:
        when = datetime.datetime.fromisoformat(value)
        if when.tzinfo is None:
            return value
        # A time near year 1 or 9999 whose offset carries it out of range in
        # UTC (an unverified manifest may say anything): shown as given.
        return when.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError):
        return value


def format_rate(rate: float | None) -> str:
    if rate is None:
        return "—"
    # Never round a failing area up to 100 %: 199/200 reads 99.5 %, not 100 %.
    percent = 100.0 * rate
    return f"{percent:.0f} %" if percent in (0.0, 100.0) else f"{min(percent, 99.9):.1f} %"


def format_size(size: int | None) -> str:
    if size is None:
        return "—"
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}".replace(".0 ", " ")


def _finalize(value: Any) -> Any:
    # Markup is already-escaped template output (macro calls); leave it alone.
    if isinstance(value, Markup):
        return value
    if value is None:
        return "—"
    if isinstance(value, str):
        return printable(value)
    return value


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("validate", "templates"),
        # Everything rendered here is untrusted (guest output, manifests).
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["seconds"] = format_seconds
    env.filters["duration"] = format_duration
    env.filters["when"] = format_time
    env.filters["rate"] = format_rate
    env.filters["size"] = format_size
    return env


def render_page(template: str, **context: Any) -> str:
    """Render one of the report templates (they share ``base.html.j2``)."""
    return _environment().get_template(template).render(**context)


def render_html(run: ValidationRun) -> str:
    results = list(run.results)
    return render_page(
        "validation.html.j2",
        run=run,
        approved=run.approved,
        counts=run.counts,
        total=len(results),
        areas=summarize_areas(results),
        findings=select_findings(results),
        waived=select_status(results, Status.waived),
        skipped=select_status(results, Status.skipped),
        results=results,
        timings=run.timings,
    )


def write_html(run: ValidationRun, path: Path) -> None:
    """report.html: one self-contained page (inline CSS, no scripts, no remote assets)."""
    write_atomically(path, render_html(run), mode=PUBLISHED_MODE)


def _message(result: CheckResult) -> str:
    return printable(f"expected {result.expected} observed {result.observed}")


def _details(result: CheckResult) -> str:
    lines = [
        f"control:  {result.id}",
        f"severity: {result.severity}",
        f"expected: {result.expected}",
        f"observed: {result.observed}",
    ]
    if result.reason:
        lines.append(f"reason:   {result.reason}")
    lines += [f"ref:      {ref}" for ref in result.references]
    return printable("\n".join(lines))


def _testcase(suite: ET.Element, result: CheckResult) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        classname=printable(result.area),
        name=printable(f"{result.id} {result.title}"),
        time=f"{result.duration:.3f}",
    )
    if result.status in (Status.failed, Status.error):
        tag = "failure" if result.status is Status.failed else "error"
        outcome = ET.SubElement(case, tag, message=_message(result), type=result.severity)
        outcome.text = _details(result)
    elif result.status in (Status.waived, Status.skipped):
        reason = result.reason or "no reason recorded"
        ET.SubElement(case, "skipped", message=printable(f"{result.status}: {reason}"))


def _suite_counts(element: ET.Element, counts: dict[str, int], seconds: float) -> None:
    element.set("tests", str(sum(counts.values())))
    element.set("failures", str(counts["failed"]))
    element.set("errors", str(counts["error"]))
    element.set("skipped", str(counts["waived"] + counts["skipped"]))
    element.set("time", f"{seconds:.3f}")


def render_junit(run: ValidationRun) -> bytes:
    """JUnit XML: one <testsuite> per area, one <testcase> per result."""
    label = printable(f"{run.template_name}-{run.template_version}")
    root = ET.Element("testsuites", name=f"goldsmith validate {label}")
    _suite_counts(root, run.counts, sum(r.duration for r in run.results))
    properties = {
        "template": label,
        "image.sha256": run.image_sha256,
        "profile": f"{run.profile_id} {run.profile_version}",
        "profile.digest": run.profile_digest,
        "accelerator": run.accelerator,
        "approved": "true" if run.approved else "false",
    }
    by_area: dict[str, list[CheckResult]] = {}
    for result in run.results:
        by_area.setdefault(result.area, []).append(result)
    for summary in summarize_areas(run.results):
        area_results = by_area[summary.area]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=printable(summary.area),
            timestamp=printable(run.started),
        )
        _suite_counts(suite, summary.counts, sum(r.duration for r in area_results))
        props = ET.SubElement(suite, "properties")
        for name, value in properties.items():
            ET.SubElement(props, "property", name=name, value=printable(value))
        for result in area_results:
            _testcase(suite, result)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def write_junit(run: ValidationRun, path: Path) -> None:
    """junit.xml for CI dashboards: waived and skipped results count as skipped."""
    write_atomically(path, render_junit(run), mode=PUBLISHED_MODE)
