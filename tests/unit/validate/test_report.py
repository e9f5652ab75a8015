"""junit.xml and report.html rendered from ValidationRun objects built here."""

from __future__ import annotations

import html.parser
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hardening.results import CheckResult, Status
from validate.report import (
    format_duration,
    format_rate,
    format_seconds,
    printable,
    render_html,
    summarize_areas,
    write_html,
    write_junit,
)
from validate.results import Package, ValidationRun

HOSTILE = '<script>alert("pwned")</script><img src="https://evil.example/x.png">'


def make_run(results: tuple[CheckResult, ...], packages: int = 3) -> ValidationRun:
    return ValidationRun(
        template_name="debian-12-baseline",
        template_version="1.0.0",
        image_path="disk.qcow2",
        image_sha256="ab" * 32,
        image_sha512="cd" * 64,
        profile_id="baseline",
        profile_version="1",
        profile_digest="sha256:" + "ef" * 32,
        started="2026-11-27T08:00:00Z",
        finished="2026-11-27T08:03:12Z",
        accelerator="kvm",
        goldsmith_version="0.1.0",
        timings={"boot": 31.2, "facts": 4.0, "checks": 2.5, "user_tests": 8.0, "total": 45.7},
        results=results,
        packages=tuple(Package(f"pkg{i}", f"1.{i}", "amd64") for i in range(packages)),
    )


MIXED = (
    CheckResult("SSH-01", "Root login disabled", "ssh", Status.passed, "no", "no", "high"),
    CheckResult(
        "SSH-02",
        "Password authentication disabled",
        "ssh",
        Status.failed,
        "PasswordAuthentication no",
        "PasswordAuthentication yes",
        "high",
        references=("CIS Debian 12 v1.1.0 5.1.19", "https://example.org/ref"),
        duration=0.25,
    ),
    CheckResult("SYSCTL-01", "kptr_restrict", "sysctl", Status.passed, "2", "2"),
    CheckResult(
        "SYSCTL-02",
        "ptrace scope",
        "sysctl",
        Status.error,
        "1",
        HOSTILE,
        "low",
    ),
    CheckResult(
        "SYSCTL-03",
        "ip_forward off",
        "sysctl",
        Status.waived,
        "0",
        "1",
        reason="router appliance needs forwarding (SEC-412)",
    ),
    CheckResult(
        "KMOD-01",
        "usb-storage disabled",
        "kmod",
        Status.skipped,
        "blacklisted",
        "",
        reason="no USB controller",
    ),
    CheckResult("HYG-01", "No host keys baked in", "hygiene", Status.passed, "none", "none"),
    CheckResult("tests/user/test_web.py::test_port", "port 443", "user", Status.passed, "", ""),
)

PASSING = (
    CheckResult("SSH-01", "Root login disabled", "ssh", Status.passed, "no", "no"),
    CheckResult("SSH-03", "MaxAuthTries", "ssh", Status.waived, "4", "6", reason="legacy tool"),
)


class Page(html.parser.HTMLParser):
    """Collects what a browser would act on: tags, URL attributes and visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value:
                self.urls.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_page(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def visible_text(page: Page) -> str:
    return " ".join(" ".join(page.text).split())


# --- JUnit ---------------------------------------------------------------------------------


def test_junit_parses_back_with_correct_counts(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(make_run(MIXED), path)

    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert root.get("tests") == "8"
    assert root.get("failures") == "1"
    assert root.get("errors") == "1"
    assert root.get("skipped") == "2"

    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["ssh", "sysctl", "kmod", "hygiene", "user"]
    sysctl = suites["sysctl"]
    assert (sysctl.get("tests"), sysctl.get("failures"), sysctl.get("errors")) == ("3", "0", "1")
    assert sysctl.get("skipped") == "1"
    cases = list(root.iter("testcase"))
    assert len(cases) == 8
    assert sum(int(s.get("tests", "0")) for s in suites.values()) == 8


def test_junit_outcome_elements(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(make_run(MIXED), path)
    cases = {c.get("name"): c for c in ET.parse(path).getroot().iter("testcase")}

    failed = cases["SSH-02 Password authentication disabled"]
    assert failed.get("classname") == "ssh"
    assert failed.get("time") == "0.250"
    failure = failed.find("failure")
    assert failure is not None
    assert failure.get("message") == (
        "expected PasswordAuthentication no observed PasswordAuthentication yes"
    )
    assert "CIS Debian 12 v1.1.0 5.1.19" in (failure.text or "")

    errored = cases["SYSCTL-02 ptrace scope"].find("error")
    assert errored is not None
    assert HOSTILE in (errored.get("message") or "")  # XML escaping round-trips it intact

    waived = cases["SYSCTL-03 ip_forward off"].find("skipped")
    assert waived is not None
    assert waived.get("message") == "waived: router appliance needs forwarding (SEC-412)"
    skipped = cases["KMOD-01 usb-storage disabled"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "skipped: no USB controller"

    passed = cases["SSH-01 Root login disabled"]
    assert list(passed) == []


def test_junit_survives_control_characters_from_the_guest(tmp_path: Path) -> None:
    # A terminal escape or NUL in guest output must not make the XML unparsable.
    nasty = CheckResult("SSH-09", "banner\x00", "ssh", Status.failed, "x", "\x1b[31mred\x07")
    path = tmp_path / "junit.xml"
    write_junit(make_run((nasty,)), path)
    failure = ET.parse(path).getroot().find("./testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message") == "expected x observed \\x1b[31mred\\x07"


def test_junit_of_an_empty_run(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(make_run(()), path)
    root = ET.parse(path).getroot()
    assert root.get("tests") == "0"
    assert list(root) == []


# --- HTML ----------------------------------------------------------------------------------


def test_html_header_summary_and_verdict(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    write_html(make_run(MIXED, packages=412), path)
    page = parse_page(path.read_text(encoding="utf-8"))
    text = visible_text(page)

    assert "debian-12-baseline" in text and "1.0.0" in text
    assert "ab" * 32 in text
    assert "sha256:" + "ef" * 32 in text
    assert "NOT APPROVED" in text
    assert "2026-11-27 08:00:00 UTC" in text and "2026-11-27 08:03:12 UTC" in text
    assert "kvm" in text
    assert "Boot 31.2 s" in text
    assert "Checks 2.5 s" in text
    assert "412 installed packages" in text
    for count, label in ((8, "checks"), (4, "passed"), (1, "failed"), (1, "error")):
        assert f"{count} {label}" in text
    assert "50.0 %" in text  # ssh: 1 of 2 applicable passed


def test_html_shows_failure_evidence_side_by_side() -> None:
    page_text = render_html(make_run(MIXED))
    start = page_text.index('id="findings"')
    end = page_text.index('id="waived"')
    findings = page_text[start:end]
    assert findings.index("PasswordAuthentication no") < findings.index(
        "PasswordAuthentication yes"
    )
    assert "CIS Debian 12 v1.1.0 5.1.19" in findings
    # High severity first, then the low-severity error.
    assert findings.index("SSH-02") < findings.index("SYSCTL-02")
    assert "SSH-01" not in findings


def results_rows(page_text: str) -> dict[str, str]:
    """The All results table's rows by check id, as HTML."""
    table = page_text[page_text.index('id="results"') : page_text.index('id="sbom"')]
    rows = table.split('<tr class="')[1:]
    return {row.split('<td class="id">')[1].split("</td>")[0]: row for row in rows}


def test_every_result_row_shows_its_references_passing_ones_too() -> None:
    passed = CheckResult(
        "kmod-cramfs",
        "cramfs cannot be loaded",
        "modules",
        Status.passed,
        "not loadable",
        "not loadable",
        references=("CIS Debian 12 v1.1.0 1.1.1.1 (L1)", "dev-sec os-10"),
        duration=0.00004,
    )
    rows = results_rows(render_html(make_run((*MIXED, passed))))
    assert rows["kmod-cramfs"].startswith("passed")
    assert "CIS Debian 12 v1.1.0 1.1.1.1 (L1) · dev-sec os-10" in rows["kmod-cramfs"]
    assert "CIS Debian 12 v1.1.0 5.1.19" in rows["SSH-02"]  # and failing ones
    assert "refs-row" not in rows["SSH-01"]  # no empty line where there are none


def test_every_result_row_shows_its_time() -> None:
    timed = (
        CheckResult("SSH-01", "Root login", "ssh", Status.passed, "no", "no", duration=0.0138),
        CheckResult("HYG-01", "No host keys", "hygiene", Status.passed, "none", "none"),
        CheckResult("t.py::test_web", "web", "user", Status.passed, "", "", duration=2.879),
    )
    rows = results_rows(render_html(make_run(timed)))
    cells = {check: row.rsplit('<td class="num muted">', 1)[1] for check, row in rows.items()}
    assert cells["SSH-01"].startswith("13.8 ms</td>")
    assert cells["HYG-01"].startswith("—</td>")  # judged with its area, not timed alone
    assert cells["t.py::test_web"].startswith("2.88 s</td>")


def test_html_never_hides_waivers() -> None:
    page_text = render_html(make_run(MIXED))
    waived = page_text[page_text.index('id="waived"') : page_text.index('id="results"')]
    assert "SYSCTL-03" in waived
    assert "router appliance needs forwarding (SEC-412)" in waived


def test_html_escapes_untrusted_text() -> None:
    page_text = render_html(make_run(MIXED))
    page = parse_page(page_text)
    assert "script" not in page.tags
    assert "img" not in page.tags
    assert "&lt;script&gt;" in page_text
    assert HOSTILE in " ".join(page.text)  # shown to the reader, as text


def test_html_is_self_contained() -> None:
    page_text = render_html(make_run(MIXED))
    page = parse_page(page_text)
    assert page.urls, "expected the in-page navigation links"
    assert all(url.startswith("#") for url in page.urls), page.urls
    assert "<link" not in page_text
    assert "@import" not in page_text
    assert "url(" not in page_text
    # A reference that is a URL is printed, not linked.
    assert "https://example.org/ref" in visible_text(page)


def test_html_neutralises_bidi_overrides() -> None:
    spoof = CheckResult("SSH-05", "t", "ssh", Status.failed, "no", "yes\u202eon\u202c")
    page_text = render_html(make_run((spoof,)))
    assert "\u202e" not in page_text
    assert "yes\\u202eon\\u202c" in page_text


def test_html_approved_run() -> None:
    text = visible_text(parse_page(render_html(make_run(PASSING))))
    assert "APPROVED" in text
    assert "NOT APPROVED" not in text
    assert "No failed or errored checks" in text
    assert "legacy tool" in text


def test_html_empty_run_is_not_approved() -> None:
    text = visible_text(parse_page(render_html(make_run((), packages=0))))
    assert "NOT APPROVED" in text
    assert "No results were recorded" in text


def test_writes_atomically_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("old", encoding="utf-8")
    write_html(make_run(MIXED), path)
    write_junit(make_run(MIXED), tmp_path / "junit.xml")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml", "report.html"]


def test_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("builder.atomic.os.replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_html(make_run(MIXED), tmp_path / "report.html")
    assert list(tmp_path.iterdir()) == []


# --- helpers -------------------------------------------------------------------------------


def test_area_order_and_rates() -> None:
    areas = summarize_areas(MIXED)
    assert [a.area for a in areas] == ["ssh", "sysctl", "kmod", "hygiene", "user"]
    kmod = areas[2]
    assert kmod.pass_rate is None  # only a skipped check: nothing to rate
    assert areas[1].counts == {"passed": 1, "failed": 0, "error": 1, "waived": 1, "skipped": 0}


@pytest.mark.parametrize(
    ("rate", "shown"),
    [(None, "—"), (1.0, "100 %"), (0.0, "0 %"), (199 / 200, "99.5 %"), (0.9999, "99.9 %")],
)
def test_format_rate_never_rounds_up_to_full(rate: float | None, shown: str) -> None:
    assert format_rate(rate) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "—"), (31.24, "31.2 s"), (125, "2 min 05 s"), (3720, "1 h 02 min")],
)
def test_format_seconds(seconds: float | None, shown: str) -> None:
    assert format_seconds(seconds) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0, "—"),
        (-1.0, "—"),
        (0.000004, "< 0.01 ms"),
        (0.00004, "0.04 ms"),
        (0.00036, "0.36 ms"),
        (0.0138, "13.8 ms"),
        (0.25, "250 ms"),
        (2.879, "2.88 s"),
        (125, "2 min 05 s"),
    ],
)
def test_format_duration(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_printable_keeps_ordinary_text() -> None:
    assert printable("tab\tnew\nline é ✓") == "tab\tnew\nline é ✓"
    assert printable("\x00\x1b\x85\u2066") == "\\x00\\x1b\\x85\\u2066"
