"""The manifest report, rendered from DSSE envelopes built here (never verified)."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from test_report import Page, parse_page, visible_text

from builder.cli import GoldsmithGroup
from builder.errors import InputError
from validate.manifest_report import COMMANDS, read_claims, render_claims, render_manifest_report

HOSTILE = '<script>alert("x")</script><img src="http://evil.example/i.png">'
NOW = datetime.datetime(2027, 1, 15, tzinfo=datetime.UTC)


def control(cid: str, area: str, status: str, observed: str = "ok", **extra: Any) -> dict[str, Any]:
    data = {
        "id": cid,
        "title": f"title of {cid}",
        "area": area,
        "status": status,
        "expected": "ok",
        "observed": observed,
        "severity": "high",
        "reason": "",
        "references": [],
        "duration": 0.01,
    }
    data.update(extra)
    return data


def make_statement() -> dict[str, Any]:
    controls = [
        control("SSH-01", "ssh", "passed"),
        control("SSH-02", "ssh", "passed", observed=HOSTILE),
        control("SYSCTL-01", "sysctl", "passed"),
        control("SYSCTL-02", "sysctl", "waived", observed="1", reason="router needs forwarding"),
        control("HYG-01", "hygiene", "passed"),
    ]
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {
                "name": "debian-12-baseline-1.0.0.qcow2",
                "digest": {"sha256": "a1" * 32, "sha512": "b2" * 64},
            }
        ],
        "predicateType": "https://goldsmith.dev/template/v1",
        "predicate": {
            "template": {
                "name": "debian-12-baseline",
                "version": "1.0.0",
                "format": "qcow2",
                "virtualSize": 4294967296,
            },
            "base": [
                {
                    "name": "debian-bookworm-debootstrap",
                    "uri": "http://deb.debian.org/debian",
                    "digest": {"sha256": "c3" * 32},
                    "source": "debootstrap",
                }
            ],
            "profile": {"id": "baseline", "version": "1", "digest": "sha256:" + "d4" * 32},
            "results": {
                "approved": True,
                "counts": {"passed": 4, "failed": 0, "error": 0, "waived": 1, "skipped": 0},
                "controls": controls,
            },
            "waivers": [
                {"control": "SYSCTL-02", "reason": "router needs forwarding", "expires": None},
                {"control": "KMOD-07", "reason": "vendor driver", "expires": "2026-12-31"},
            ],
            "sbom": {
                "format": "goldsmith-dpkg/v1",
                "packages": [
                    {
                        "name": "openssh-server",
                        "version": "1:9.2p1-2+deb12u3",
                        "architecture": "amd64",
                    },
                    {"name": HOSTILE, "version": "1", "architecture": "all"},
                ],
            },
            "builder": {"id": "https://goldsmith.dev/builder", "version": "0.1.0"},
            "tools": {"qemu": "7.2.22", "goldsmith": "0.1.0"},
            "inputs": {
                "spec": {
                    "uri": "templates/debian-12-baseline.yaml",
                    "digest": {"sha256": "e5" * 32},
                },
                "profile": {"uri": "baseline.yaml", "digest": {"sha256": "f6" * 32}},
            },
            "build": {
                "accelerator": "kvm",
                "started": "2026-11-27T07:40:00Z",
                "finished": "2026-11-27T07:52:00Z",
                "record": {"digest": {"sha256": "17" * 32}},
            },
            "validation": {
                "finished": "2026-11-27T08:03:12Z",
                "accelerator": "kvm",
                "record": {"digest": {"sha256": "28" * 32}},
            },
            "approval": {
                "time": "2026-11-27T08:05:00Z",
                "keyid": "39" * 32,
                "validUntil": "2027-11-27T08:05:00Z",
            },
            "previousManifest": {"digest": {"sha256": "4a" * 32}},
        },
    }


def write_envelope(
    directory: Path,
    statement: Any,
    *,
    payload_type: str = "application/vnd.in-toto+json",
    payload: str | None = None,
) -> Path:
    if payload is None:
        payload = base64.b64encode(json.dumps(statement).encode()).decode()
    envelope = {
        "payloadType": payload_type,
        "payload": payload,
        # Not a valid signature: the report must render without verifying anything.
        "signatures": [{"keyid": "39" * 32, "sig": base64.b64encode(b"\0" * 64).decode()}],
    }
    path = directory / "manifest.dsse.json"
    path.write_text(json.dumps(envelope), encoding="utf-8")
    return path


def parse(text: str) -> tuple[Page, str]:
    page = parse_page(text)
    return page, visible_text(page)


def section(page_text: str, start_id: str, end_id: str) -> str:
    return page_text[page_text.index(f'id="{start_id}"') : page_text.index(f'id="{end_id}"')]


def test_renders_every_claim(tmp_path: Path) -> None:
    path = write_envelope(tmp_path, make_statement())
    page_text = render_claims(read_claims(path), now=NOW)
    _, text = parse(page_text)

    assert text.startswith(
        "debian-12-baseline 1.0.0: manifest claims · goldsmith"
    )  # the <title>, then the notice first thing in the body
    assert (
        "This page shows what the manifest claims. Run goldsmith verify to check signatures"
        " and digests." in text
    )
    assert text.index("This page shows what the manifest claims") < text.index("APPROVED")
    assert "debian-12-baseline-1.0.0.qcow2" in text
    assert "a1" * 32 in text and "b2" * 64 in text
    assert "qcow2 · virtual size 4 GiB" in text
    assert "debian-bookworm-debootstrap" in text and "c3" * 32 in text
    assert "http://deb.debian.org/debian" in text
    assert "sha256:" + "d4" * 32 in text
    assert "39" * 32 in text
    assert "2026-11-27 08:05:00 UTC" in text and "2027-11-27 08:05:00 UTC" in text
    assert "e5" * 32 in text and "17" * 32 in text and "28" * 32 in text
    assert "4a" * 32 in text
    assert "openssh-server" in text and "1:9.2p1-2+deb12u3" in text
    assert "qemu 7.2.22" in text
    assert "5 checks" in text and "4 passed" in text and "1 waived" in text
    assert "NOT APPROVED" not in text
    assert "contradicts itself" not in text


def test_waivers_are_shown_with_reasons_and_expiry(tmp_path: Path) -> None:
    path = write_envelope(tmp_path, make_statement())
    page_text = render_claims(read_claims(path), now=NOW)
    waivers = section(page_text, "waivers", "lineage")
    _, text = parse(waivers)
    assert "SYSCTL-02" in text and "router needs forwarding" in text
    assert "KMOD-07 vendor driver 2026-12-31 expired" in text
    assert "never" in text


def test_untrusted_text_is_escaped_and_nothing_is_linked(tmp_path: Path) -> None:
    path = write_envelope(tmp_path, make_statement())
    page_text = render_manifest_report(path)
    page, _ = parse(page_text)
    assert "script" not in page.tags and "img" not in page.tags
    assert "&lt;script&gt;" in page_text
    assert all(url.startswith("#") for url in page.urls), page.urls
    assert HOSTILE in "".join(page.text)


def test_points_out_a_self_contradicting_manifest(tmp_path: Path) -> None:
    statement = make_statement()
    statement["predicate"]["results"]["controls"][0]["status"] = "failed"
    path = write_envelope(tmp_path, statement)
    _, text = parse(render_manifest_report(path))
    assert "The manifest contradicts itself." in text
    assert "verdict does not follow" in text and "counts do not match" in text


def test_sparse_manifest_renders_with_gaps(tmp_path: Path) -> None:
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [],
        "predicateType": "https://goldsmith.dev/template/v1",
        "predicate": {},
    }
    _, text = parse(render_manifest_report(write_envelope(tmp_path, statement)))
    assert "NO VERDICT" in text
    assert "No results were recorded." in text
    assert "none (first manifest of this template)" in text


def test_url_safe_unpadded_payload_is_accepted(tmp_path: Path) -> None:
    raw = json.dumps(make_statement()).encode()
    payload = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    claims = read_claims(write_envelope(tmp_path, None, payload=payload))
    assert claims.template_name == "debian-12-baseline"


def _bad(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "manifest.dsse.json"
    good = make_statement()
    if kind == "missing":
        return tmp_path / "absent.json"
    if kind == "not-json":
        path.write_text("PK\x03\x04 definitely a zip", encoding="utf-8")
    elif kind == "array":
        path.write_text("[1, 2]", encoding="utf-8")
    elif kind == "no-payload":
        path.write_text(json.dumps({"payloadType": "x", "signatures": []}), encoding="utf-8")
    elif kind == "bad-base64":
        write_envelope(tmp_path, good, payload="!!! not base64 !!!")
    elif kind == "payload-not-json":
        write_envelope(tmp_path, good, payload=base64.b64encode(b"hello").decode())
    elif kind == "payload-not-object":
        write_envelope(tmp_path, [1])
    elif kind == "payload-type":
        write_envelope(tmp_path, good, payload_type="text/plain")
    elif kind == "predicate-type":
        good["predicateType"] = "https://slsa.dev/provenance/v1"
        write_envelope(tmp_path, good)
    elif kind == "bad-control":
        del good["predicate"]["results"]["controls"][1]["status"]
        write_envelope(tmp_path, good)
    elif kind == "bad-status":
        good["predicate"]["results"]["controls"][1]["status"] = "fine"
        write_envelope(tmp_path, good)
    elif kind == "bad-type":
        good["predicate"]["template"]["virtualSize"] = "4G"
        write_envelope(tmp_path, good)
    elif kind == "dup-control":  # listed failed, then passed
        controls = good["predicate"]["results"]["controls"]
        controls.insert(2, {**controls[0], "status": "failed"})
        write_envelope(tmp_path, good)
    return path


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("missing", None),
        ("not-json", None),
        ("array", None),
        ("no-payload", "payload"),
        ("bad-base64", "payload"),
        ("payload-not-json", "payload"),
        ("payload-not-object", "payload"),
        ("payload-type", "payloadType"),
        ("predicate-type", "payload.predicateType"),
        ("bad-control", "payload.predicate.results.controls[1]"),
        ("bad-status", "payload.predicate.results.controls[1]"),
        ("bad-type", "payload.predicate.template.virtualSize"),
        ("dup-control", "payload.predicate.results.controls[2].id"),
    ],
)
def test_bad_input_is_an_input_error(tmp_path: Path, kind: str, field: str | None) -> None:
    path = _bad(tmp_path, kind)
    with pytest.raises(InputError) as caught:
        render_manifest_report(path)
    assert caught.value.exit_code == 2
    assert caught.value.field == field
    assert str(path) in caught.value.message


def _cli() -> click.Group:
    # The way builder.cli registers a module's COMMANDS, with its error handling.
    group = GoldsmithGroup("goldsmith")
    for command in COMMANDS:
        group.add_command(command)
    return group


def test_cli_writes_the_page(tmp_path: Path) -> None:
    path = write_envelope(tmp_path, make_statement())
    out = tmp_path / "claims.html"
    result = CliRunner().invoke(_cli(), ["report", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert "This page shows what the manifest claims." in out.read_text(encoding="utf-8")


def test_cli_prints_the_page_without_out(tmp_path: Path) -> None:
    path = write_envelope(tmp_path, make_statement())
    result = CliRunner().invoke(_cli(), ["report", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!DOCTYPE html>")


def test_cli_bad_input_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), ["report", str(_bad(tmp_path, "payload-type"))])
    assert result.exit_code == 2
    assert "payloadType" in result.stderr
