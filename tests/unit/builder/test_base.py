"""Base images, the parts that read what others wrote: the cache's meta.json,
qemu-img's account of an image header, and a download server's answers."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from builder import base, bootstrap
from builder.cache import digest_json
from builder.errors import BuildError
from builder.firmware import Firmware
from builder.spec import DebootstrapBase


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


# --- debootstrap recipe: firmware and releases ---------------------------------


def debootstrap(suite: str = "bookworm", firmware: Firmware = Firmware.bios) -> DebootstrapBase:
    return DebootstrapBase(
        suite=suite,
        mirror="http://deb.debian.org/debian",
        security_mirror="http://deb.debian.org/debian-security",
        packages=(),
        firmware=firmware,
    )


def test_a_bios_bookworm_base_keeps_its_cache_key() -> None:
    # Every BIOS bookworm base cached before firmware existed stays valid.
    inputs = base.bootstrap_inputs(debootstrap())
    assert set(inputs) == {
        "recipe",
        "suite",
        "mirror",
        "security_mirror",
        "packages",
        "architecture",
        "disk_size",
    }
    assert "grub-pc" in inputs["packages"]
    assert not {"grub-efi-amd64", "shim-signed"} & set(inputs["packages"])


def test_the_firmware_is_part_of_the_base_key() -> None:
    keys = {digest_json(base.bootstrap_inputs(debootstrap(firmware=f))) for f in Firmware}
    assert len(keys) == 3
    uefi = base.bootstrap_inputs(debootstrap(firmware=Firmware.uefi))
    assert uefi["firmware"] == "uefi"
    assert "grub-efi-amd64" in uefi["packages"] and "grub-pc" not in uefi["packages"]
    assert "shim-signed" not in uefi["packages"]
    secure = base.bootstrap_inputs(debootstrap(firmware=Firmware.uefi_secureboot))
    # Debian's signed chain: shim, signed GRUB; the cloud kernel is signed already.
    assert {"shim-signed", "grub-efi-amd64-signed", "linux-image-cloud-amd64"} <= set(
        secure["packages"]
    )
    assert "grub-pc" not in secure["packages"]


def test_trixie_gets_deb822_sources_and_its_own_key() -> None:
    assert not bootstrap.uses_deb822("bookworm")
    assert (
        bootstrap.uses_deb822("trixie")
        and bootstrap.uses_deb822("forky")
        and bootstrap.uses_deb822("sid")
    )
    assert base.bootstrap_inputs(debootstrap("trixie"))["sources"] == "deb822"
    assert "sources" not in base.bootstrap_inputs(debootstrap("bookworm"))


def fake_tree(root: Path) -> Path:
    tree = root / "tree"
    for folder in (
        "etc/apt/sources.list.d",
        "etc/ssh",
        "etc/systemd/network",
        "etc/cloud/cloud.cfg.d",
        "etc/default",
        "usr/local/sbin",
        "var/lib/dbus",
        "var/cache/apt",
        "var/lib/apt/lists",
    ):
        (tree / folder).mkdir(parents=True)
    (tree / "etc/apt/sources.list").write_text("deb http://deb.debian.org/debian trixie main\n")
    return tree


def test_a_trixie_tree_has_one_deb822_sources_file(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path)
    bootstrap._customize_tree(tree, "0" * 8, debootstrap("trixie"), None)

    assert not (tree / "etc/apt/sources.list").exists()
    text = (tree / "etc/apt/sources.list.d/debian.sources").read_text()
    stanzas = [dict(line.split(": ", 1) for line in s.splitlines()) for s in text.split("\n\n")]
    assert stanzas == [
        {
            "Types": "deb",
            "URIs": "http://deb.debian.org/debian",
            "Suites": "trixie trixie-updates",
            "Components": "main",
            "Signed-By": "/usr/share/keyrings/debian-archive-keyring.gpg",
        },
        {
            "Types": "deb",
            "URIs": "http://deb.debian.org/debian-security",
            "Suites": "trixie-security",
            "Components": "main",
            "Signed-By": "/usr/share/keyrings/debian-archive-keyring.gpg",
        },
    ]


def test_a_bookworm_tree_keeps_its_sources_list(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path)
    bootstrap._customize_tree(tree, "0" * 8, debootstrap("bookworm"), None)
    assert (tree / "etc/apt/sources.list").is_file()
    assert not (tree / "etc/apt/sources.list.d/debian.sources").exists()


def test_a_uefi_tree_mounts_its_esp_and_installs_grub_for_efi(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path)
    bootstrap._customize_tree(
        tree, "1234", debootstrap(firmware=Firmware.uefi_secureboot), "ABCD0123"
    )
    fstab = (tree / "etc/fstab").read_text().splitlines()
    assert fstab == [
        "UUID=1234 / ext4 rw,discard,errors=remount-ro 0 1",
        "UUID=ABCD-0123 /boot/efi vfat umask=0077 0 0",
    ]
    script = (tree / "usr/local/sbin/goldsmith-firstboot").read_text()
    assert "--target=x86_64-efi" in script and "--uefi-secure-boot" in script
    # The removable path, and no NVRAM: a fresh variable store must boot it.
    assert "--force-extra-removable" in script and "--no-nvram" in script
    assert "test -s /boot/efi/EFI/BOOT/BOOTX64.EFI" in script
    assert "i386-pc" not in script


def test_the_bios_first_boot_is_unchanged() -> None:
    script = bootstrap.firstboot_script(Firmware.bios)
    assert "grub-install --target=i386-pc /dev/vda\nupdate-grub\nrm -f" in script
    assert "@" not in script and "efi" not in script
    assert "--no-uefi-secure-boot" in bootstrap.firstboot_script(Firmware.uefi)
    for firmware in Firmware:
        assert "@" not in bootstrap.firstboot_script(firmware)


needs_sfdisk = pytest.mark.skipif(shutil.which("sfdisk") is None, reason="sfdisk is needed")


def partition_table(tmp_path: Path, firmware: Firmware) -> dict[str, Any]:
    disk = tmp_path / f"{firmware}.raw"
    with open(disk, "wb") as f:
        f.truncate(bootstrap.BASE_DISK_SIZE)
    layout = bootstrap.disk_layout(firmware)
    subprocess.run(["sfdisk", "--quiet", disk], input=layout.sfdisk.encode(), check=True)
    out = subprocess.run(["sfdisk", "--json", disk], capture_output=True, check=True)
    table: dict[str, Any] = json.loads(out.stdout)["partitiontable"]
    return table


@needs_sfdisk
def test_the_bios_disk_is_one_bootable_mbr_partition(tmp_path: Path) -> None:
    table = partition_table(tmp_path, Firmware.bios)
    layout = bootstrap.disk_layout(Firmware.bios)
    assert table["label"] == "dos"
    (root,) = table["partitions"]
    assert root["start"] * 512 == layout.root_offset and root.get("bootable")
    assert root["size"] * 512 >= layout.root_size


@needs_sfdisk
@pytest.mark.parametrize("firmware", [Firmware.uefi, Firmware.uefi_secureboot])
def test_a_uefi_disk_is_gpt_with_the_esp_first_and_root_last(
    tmp_path: Path, firmware: Firmware
) -> None:
    table = partition_table(tmp_path, firmware)
    layout = bootstrap.disk_layout(firmware)
    assert table["label"] == "gpt"
    esp, root = table["partitions"]
    assert esp["type"] == bootstrap.ESP_TYPE
    assert (
        esp["start"] * 512 == bootstrap.PARTITION_OFFSET and esp["size"] * 512 == bootstrap.ESP_SIZE
    )
    assert root["type"] == bootstrap.LINUX_DATA_TYPE
    assert root["start"] * 512 == layout.root_offset
    # The ext4 image fits its partition, which ends before GPT's backup table.
    assert layout.root_size <= root["size"] * 512
    assert (root["start"] + root["size"]) * 512 <= bootstrap.BASE_DISK_SIZE - 33 * 512


@pytest.mark.skipif(shutil.which("mkfs.vfat") is None, reason="dosfstools is needed")
def test_the_esp_is_a_fat32_file_with_the_fstab_serial(tmp_path: Path) -> None:
    esp = tmp_path / "esp.vfat"
    bootstrap.make_esp(esp, "ABCD0123")
    assert esp.stat().st_size == bootstrap.ESP_SIZE
    boot = esp.read_bytes()[:512]
    assert boot[82:90] == b"FAT32   "
    assert int.from_bytes(boot[67:71], "little") == 0xABCD0123  # the volume id fstab names
    assert boot[510:512] == b"\x55\xaa"


def test_only_uefi_bases_skip_the_kernel_timer_check(tmp_path: Path) -> None:
    for firmware, expected in (
        (Firmware.bios, 'GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"'),
        (Firmware.uefi, 'GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8 no_timer_check"'),
    ):
        tree = fake_tree(tmp_path / str(firmware))
        (tree / "etc/default").mkdir(exist_ok=True)
        bootstrap._customize_tree(tree, "1", debootstrap(firmware=firmware), None)
        text = (tree / "etc/default/grub.d/10-goldsmith.cfg").read_text()
        assert expected in text.splitlines()
    # A UEFI base's key names its command line; a BIOS base's is as it always was.
    assert (
        "no_timer_check"
        in base.bootstrap_inputs(debootstrap(firmware=Firmware.uefi))["kernel_cmdline"]
    )
    assert "kernel_cmdline" not in base.bootstrap_inputs(debootstrap())


@pytest.mark.parametrize(
    "before, after",
    [
        ("hosts:          files dns", "hosts:          files myhostname dns"),
        # libnss-myhostname's own maintainer script may append it after dns.
        ("hosts:          files dns myhostname", "hosts:          files myhostname dns"),
        ("hosts: dns files", "hosts:          dns files myhostname"),
        ("hosts: dns", "hosts:          myhostname dns"),
        ("hosts:          files myhostname dns", "hosts:          files myhostname dns"),
    ],
)
def test_the_own_name_resolves_before_dns_is_asked(before: str, after: str) -> None:
    text = "passwd:         files\n{}\nnetworks:       files\n"
    assert bootstrap.hosts_lookup(text.format(before)) == text.format(after)


def test_a_tree_gets_myhostname_in_its_hosts_line(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path)
    (tree / "etc/nsswitch.conf").write_text("passwd: files\nhosts: files dns\n")
    bootstrap._customize_tree(tree, "0" * 8, debootstrap("trixie"), None)
    assert "hosts:          files myhostname dns" in (tree / "etc/nsswitch.conf").read_text()
    assert "libnss-myhostname" in bootstrap.base_packages(Firmware.bios)
    # Without a file (a tree that never had one), the line is written alone.
    assert bootstrap.hosts_lookup("") == "hosts:          files myhostname dns\n"
