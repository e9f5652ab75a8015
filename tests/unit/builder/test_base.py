"""Base images, the parts that read what others wrote: the cache's meta.json,
qemu-img's account of an image header, and a download server's answers."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from builder import base
from builder.errors import BuildError


def fake_qemu_img(monkeypatch: pytest.MonkeyPatch, stdout: str) -> list[list[str]]:
    calls: list[list[str]] = []

    def run(cmd: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append([str(c) for c in cmd])
        return subprocess.CompletedProcess(list(cmd), 0, stdout, "")

    monkeypatch.setattr(base, "run", run)
    return calls


def test_image_format_asks_qemu_img_with_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_qemu_img(monkeypatch, '{"format": "qcow2", "virtual-size": 1}')
    monkeypatch.chdir(tmp_path)

    assert base.image_format(Path("nbd:host:10809")) == "qcow2"
    # Relative, "nbd:host..." would be read by qemu-img as a network disk.
    assert calls[0][-1] == str(tmp_path / "nbd:host:10809")


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        (
            '{"format": "qcow2", "backing-filename": "/x\\u001b[2J\\n"}',
            r"backing file (/x\x1b[2J\x0a)",
        ),
        ('{"format": "vmdk"}', "'vmdk' is not supported"),
        ('{"format": "qcow2", "format": "raw"}', "duplicate key"),
        ("[1, 2]", "no JSON object"),
        ("not json", "no readable answer"),
        ("{}", "'None' is not supported"),
    ],
)
def test_image_format_reads_qemu_img_strictly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdout: str, expected: str
) -> None:
    fake_qemu_img(monkeypatch, stdout)
    with pytest.raises(BuildError) as info:
        base.image_format(tmp_path / "image")
    assert expected in info.value.message
    assert "\x1b" not in info.value.message and "\n" not in info.value.message


@pytest.mark.parametrize(
    "meta",
    [None, "", "{", '{"sha256": 1}', '{"sha256": "short"}', '{"sha256": "a", "sha256": "b"}'],
)
def test_a_broken_cache_record_is_a_build_error_with_a_hint(
    tmp_path: Path, meta: str | None
) -> None:
    if meta is not None:
        (tmp_path / "meta.json").write_text(meta)
    with pytest.raises(BuildError) as info:
        base._cached_digest(tmp_path)
    assert "meta.json" in info.value.message
    assert info.value.hint == f"remove {tmp_path} to bootstrap the base again"


def test_a_cache_record_fifo_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "meta.json")
    with pytest.raises(BuildError, match="not a regular file"):
        base._cached_digest(tmp_path)


def test_a_good_cache_record(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text('{"sha256": "' + "ab" * 32 + '", "inputs": {}}')
    assert base._cached_digest(tmp_path) == "ab" * 32


class _Server(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}

    def do_GET(self) -> None:
        code, headers, body = self.routes[self.path]
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_a_download_with_a_bogus_length_header_still_downloads(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        _Server, "routes", {"/image": (200, {"Content-Length": "lots"}, b"QFI\xfb image")}
    )
    base._download(f"{server}/image", tmp_path / "image")
    assert (tmp_path / "image").read_bytes().startswith(b"QFI\xfb")


def test_a_download_redirected_to_ftp_is_refused(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = {"/image": (302, {"Location": "ftp://127.0.0.1/image"}, b"")}
    monkeypatch.setattr(_Server, "routes", routes)
    with pytest.raises(BuildError, match="redirect to a scheme other than http or https"):
        base._download(f"{server}/image", tmp_path / "image")


def test_a_download_that_never_ends_is_cut(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "MAX_DOWNLOAD", 3 << 20)
    monkeypatch.setattr(_Server, "routes", {"/image": (200, {}, bytes(5 << 20))})
    with pytest.raises(BuildError, match="more than"):
        base._download(f"{server}/image", tmp_path / "image")
