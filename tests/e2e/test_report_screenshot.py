"""report.html as a browser shows it: rendered by headless Chromium, checked by its pixels.

No VM is involved, so no ``vm`` marker. Without Chromium the test skips on a
workstation but fails under CI (``CI`` set), where `make deps` installs it.
"""

from __future__ import annotations

import collections
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from hardening.results import CheckResult, Status
from validate.report import write_html

# The run's metadata is the one the report's unit tests render.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "validate"))
from test_report import make_run

WIDTH, HEIGHT = 1280, 2000

# The page's palette (validate/templates/base.html.j2): the NOT APPROVED verdict and
# failure bars are --failed, pass-rate bars are --passed, waived is --waived.
FAILED_RED = (0xCF, 0x22, 0x2E)
PASSED_GREEN = (0x1A, 0x7F, 0x37)
WAIVED_PURPLE = (0x82, 0x50, 0xDF)


RESULTS = (
    CheckResult("SSH-01", "Root login disabled", "ssh", Status.passed, "no", "no", "high"),
    CheckResult(
        "SSH-02",
        "Password authentication disabled",
        "ssh",
        Status.failed,
        "PasswordAuthentication no",
        "PasswordAuthentication yes",
        "high",
        references=("CIS Debian 12 v1.1.0 5.1.19",),
    ),
    CheckResult(
        "SYSCTL-02",
        "ptrace scope restricted",
        "sysctl",
        Status.error,
        "1",
        "<script>document.body.innerHTML=''</script>",
        "low",
    ),
    CheckResult(
        "SYSCTL-03",
        "IPv4 forwarding off",
        "sysctl",
        Status.waived,
        "0",
        "1",
        reason="router appliance needs forwarding (SEC-412)",
    ),
    CheckResult("HYG-01", "No host keys baked in", "hygiene", Status.passed, "none", "none"),
    *(
        CheckResult(f"SYSCTL-{i:02d}", f"sysctl setting {i}", "sysctl", Status.passed, "1", "1")
        for i in range(10, 30)
    ),
)


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (run `make deps`); CI must run this test")
    pytest.skip("chromium is not installed")


def decode_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """Width, height, unfiltered rows and bytes per pixel of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, bytearray()
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind_byte, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind_byte == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind_byte == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind_byte == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind_byte == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows, channels


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    chromium = find_chromium()
    report = tmp_path / "report.html"
    write_html(make_run(RESULTS, packages=300), report)
    shot = tmp_path / "report.png"

    completed = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            f"--window-size={WIDTH},{HEIGHT}",
            report.as_uri(),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "HOME": str(tmp_path), "LANG": "C.UTF-8"},
        check=False,
    )
    assert shot.exists(), f"no screenshot; chromium said:\n{completed.stderr[-2000:]}"
    data = shot.read_bytes()
    assert len(data) > 20 * 1024, f"screenshot is only {len(data)} bytes: blank page?"

    width, height, rows, channels = decode_png(data)
    assert (width, height) == (WIDTH, HEIGHT)
    colours: collections.Counter[tuple[int, ...]] = collections.Counter()
    for row in rows[::2]:
        for x in range(0, len(row), channels * 2):
            colours[tuple(row[x : x + 3])] += 1
    assert len(colours) > 200, "too few colours: the page did not render text and styles"
    background = colours.most_common(1)[0][1]
    assert background < 0.95 * sum(colours.values()), "the page is (nearly) one colour"
    # The verdict, bars and badges drew in the report's colours: CSS was applied
    # and the hostile <script> in the observed value did not blank the page.
    for colour in (FAILED_RED, PASSED_GREEN, WAIVED_PURPLE):
        assert colours[colour] > 50, f"colour {colour} missing from the screenshot"
