from __future__ import annotations

import dataclasses
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from builder import accel_probe, qemu, qemu_command
from builder import firmware as fw
from builder.accel_probe import probe_accelerator
from builder.errors import GuestError, ToolError
from builder.firmware import Firmware
from builder.qemu import start_vm
from builder.qemu_command import (
    QEMU,
    Accelerator,
    KernelBoot,
    MachineConfig,
    build_command,
    free_port,
)

# These run QEMU itself, briefly and without booting an operating system.
needs_qemu = pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} is not installed")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # QMP's unix socket path must fit in 108 bytes; pytest's tmp_path may not.
    with tempfile.TemporaryDirectory(prefix="gs-qemu-") as tmp:
        yield Path(tmp)


def config(folder: Path, **changes: Any) -> MachineConfig:
    values: dict[str, Any] = {
        "disk": folder / "overlay.qcow2",
        "accelerator": Accelerator.tcg,
        "memory": 2048,
        "cpus": 2,
        "serial_log": folder / "serial.log",
        "qmp_socket": folder / "qmp.sock",
    }
    values.update(changes)
    return MachineConfig(**values)


def values_of(cmd: Sequence[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, arg in enumerate(cmd[:-1]) if arg == flag]


def value_of(cmd: Sequence[str], flag: str) -> str:
    found = values_of(cmd, flag)
    assert len(found) == 1, f"{flag} given {len(found)} times in {cmd}"
    return found[0]


# --- the command line ------------------------------------------------------


def test_a_bios_boot_with_seed_and_ssh(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    cmd = build_command(config(tmp_path, seed=seed, ssh_port=40022))

    assert cmd[0] == QEMU
    assert value_of(cmd, "-m") == "2048"
    assert value_of(cmd, "-smp") == "2"
    # Nothing QEMU would add by itself: no default NIC, monitor, display or config.
    assert "-nodefaults" in cmd and "-no-user-config" in cmd
    assert value_of(cmd, "-display") == "none"
    assert not {"-vnc", "-spice", "-monitor", "-nographic"} & set(cmd)
    serial, qmp = values_of(cmd, "-chardev")
    assert serial == f"file,id=serial0,path={tmp_path / 'serial.log'}"
    assert value_of(cmd, "-serial") == "chardev:serial0"
    assert qmp == f"socket,id=qmp0,path={tmp_path / 'qmp.sock'},server=on,wait=off"
    assert value_of(cmd, "-mon") == "chardev=qmp0,mode=control"

    disk, seed_drive = values_of(cmd, "-drive")
    assert disk.split(",") == [
        f"file={tmp_path / 'overlay.qcow2'}",
        "if=virtio",
        "format=qcow2",
        "cache=unsafe",
        "discard=unmap",
    ]
    assert seed_drive.split(",") == [
        f"file={seed}",
        "if=virtio",
        "format=raw",
        "readonly=on",
        "media=cdrom",
    ]

    assert value_of(cmd, "-netdev") == "user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22"
    assert "virtio-net-pci,netdev=net0" in values_of(cmd, "-device")
    assert "virtio-rng-pci,rng=rng0" in values_of(cmd, "-device")
    # A BIOS boot: the firmware boots the disk, nothing is loaded directly.
    assert not {"-kernel", "-initrd", "-append", "-no-reboot"} & set(cmd)


def test_ssh_is_forwarded_from_loopback_only(tmp_path: Path) -> None:
    cmd = build_command(config(tmp_path, ssh_port=2222))
    forwards = [part for arg in cmd for part in arg.split(",") if part.startswith("hostfwd=")]
    assert forwards == ["hostfwd=tcp:127.0.0.1:2222-:22"]


def test_without_ssh_port_nothing_is_forwarded(tmp_path: Path) -> None:
    cmd = build_command(config(tmp_path))
    assert value_of(cmd, "-netdev") == "user,id=net0"
    assert not any("hostfwd" in arg for arg in cmd)


def test_without_seed_there_is_one_drive(tmp_path: Path) -> None:
    cmd = build_command(config(tmp_path))
    assert len(values_of(cmd, "-drive")) == 1


def test_kvm_uses_the_host_cpu_and_q35(tmp_path: Path) -> None:
    cmd = build_command(config(tmp_path, accelerator=Accelerator.kvm))
    assert value_of(cmd, "-accel") == "kvm"
    assert value_of(cmd, "-cpu") == "host"
    assert value_of(cmd, "-machine") == "q35"


def test_tcg_emulates_the_widest_cpu(tmp_path: Path) -> None:
    cmd = build_command(config(tmp_path, accelerator=Accelerator.tcg))
    assert value_of(cmd, "-accel") == "tcg"
    assert value_of(cmd, "-cpu") == "max"
    assert value_of(cmd, "-machine") == "pc"


def test_kvm_and_tcg_differ_only_in_machine_accelerator_and_cpu(tmp_path: Path) -> None:
    kvm = build_command(config(tmp_path, accelerator=Accelerator.kvm, ssh_port=1))
    tcg = build_command(config(tmp_path, accelerator=Accelerator.tcg, ssh_port=1))
    differ = [(a, b) for a, b in zip(kvm, tcg, strict=True) if a != b]
    assert differ == [("q35", "pc"), ("kvm", "tcg"), ("host", "max")]


def test_direct_kernel_boot(tmp_path: Path) -> None:
    boot = KernelBoot(
        kernel=tmp_path / "vmlinuz",
        initrd=tmp_path / "initrd.img",
        append="console=ttyS0 root=/dev/vda rw",
    )
    cmd = build_command(config(tmp_path, kernel_boot=boot, disk_format="raw"))

    assert value_of(cmd, "-kernel") == str(tmp_path / "vmlinuz")
    assert value_of(cmd, "-initrd") == str(tmp_path / "initrd.img")
    assert value_of(cmd, "-append") == "console=ttyS0 root=/dev/vda rw"
    # The first boot of a base image ends with a power-off: it must not loop.
    assert cmd[-1] == "-no-reboot"
    assert "format=raw" in value_of(cmd, "-drive").split(",")


def test_direct_kernel_boot_without_initrd(tmp_path: Path) -> None:
    boot = KernelBoot(kernel=tmp_path / "vmlinuz", initrd=None, append="console=ttyS0")
    cmd = build_command(config(tmp_path, kernel_boot=boot))
    assert value_of(cmd, "-kernel") == str(tmp_path / "vmlinuz")
    assert "-initrd" not in cmd
    assert "-no-reboot" in cmd


def test_a_snapshot_disk_takes_no_writes(tmp_path: Path) -> None:
    cmd = build_command(config(tmp_path, snapshot=True))
    assert value_of(cmd, "-drive").split(",")[-1] == "snapshot=on"
    assert "snapshot=on" not in build_command(config(tmp_path))[-1]


def qemu_options(value: str) -> list[tuple[str, str]]:
    """An option list split the way QEMU's parser splits it: a single comma
    ends a value, ",," is one literal comma."""
    options: list[tuple[str, str]] = []
    for item in re.split(r"(?<!,),(?!,)", value.replace(",,", "\0")):
        key, _, text = item.partition("=")
        options.append((key, text.replace("\0", ",")))
    return options


# A folder name that, unescaped, would close file= and add options of its own.
HOSTILE = "out,snapshot=off,file=/etc/shadow,format=raw,if=none"


@pytest.mark.parametrize("accelerator", [Accelerator.kvm, Accelerator.tcg])
def test_a_path_with_commas_stays_one_option_value(
    tmp_path: Path, accelerator: Accelerator
) -> None:
    folder = tmp_path / HOSTILE
    cmd = build_command(
        config(folder, accelerator=accelerator, seed=folder / "seed,x.iso", ssh_port=2222)
    )

    disk, seed = (qemu_options(v) for v in values_of(cmd, "-drive"))
    assert disk == [
        ("file", str(folder / "overlay.qcow2")),
        ("if", "virtio"),
        ("format", "qcow2"),
        ("cache", "unsafe"),
        ("discard", "unmap"),
    ]
    assert seed == [
        ("file", str(folder / "seed,x.iso")),
        ("if", "virtio"),
        ("format", "raw"),
        ("readonly", "on"),
        ("media", "cdrom"),
    ]
    serial, qmp = (qemu_options(v) for v in values_of(cmd, "-chardev"))
    assert serial == [("file", ""), ("id", "serial0"), ("path", str(folder / "serial.log"))]
    assert qmp == [
        ("socket", ""),
        ("id", "qmp0"),
        ("path", str(folder / "qmp.sock")),
        ("server", "on"),
        ("wait", "off"),
    ]
    # Only the accelerator's own choices differ between KVM and TCG.
    assert value_of(cmd, "-accel") == str(accelerator)
    assert value_of(cmd, "-machine") == ("q35" if accelerator is Accelerator.kvm else "pc")


def test_a_snapshot_disk_with_commas_keeps_snapshot_on(tmp_path: Path) -> None:
    cmd = build_command(config(tmp_path / "a,snapshot=off", snapshot=True))
    options = qemu_options(value_of(cmd, "-drive"))
    assert ("snapshot", "on") in options
    assert [k for k, _ in options].count("snapshot") == 1


@pytest.mark.parametrize("relative", ["nbd:evil.example:10809/x", "json:{}/x", "out/disk.qcow2"])
def test_relative_paths_become_absolute_so_no_protocol_prefix_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: str
) -> None:
    monkeypatch.chdir(tmp_path)
    boot = KernelBoot(kernel=Path(relative), initrd=Path(relative), append="x")
    cmd = build_command(config(Path("."), disk=Path(relative), kernel_boot=boot))

    (file,) = [v for k, v in qemu_options(value_of(cmd, "-drive")) if k == "file"]
    assert file == str(tmp_path / relative)
    assert value_of(cmd, "-kernel") == str(tmp_path / relative)
    assert value_of(cmd, "-initrd") == str(tmp_path / relative)


def test_option_value_doubles_commas_only() -> None:
    assert qemu_command.option_value("/a,b,,c=d") == "/a,,b,,,,c=d"
    assert qemu_command.option_value("/plain/path") == "/plain/path"


@needs_qemu
def test_qemu_opens_the_very_files_whose_paths_hold_commas(tmp_path: Path) -> None:
    # -S: QEMU parses everything, opens the disks and the serial file, runs no guest code.
    folder = tmp_path / "a,b=c,if=none"
    folder.mkdir()
    with tempfile.TemporaryDirectory(prefix="gs,q-") as sockets:
        disk = folder / "disk,x.raw"
        disk.write_bytes(bytes(1 << 20))
        machine = config(
            folder, disk=disk, disk_format="raw", qmp_socket=Path(sockets) / "q,mp.sock"
        )
        proc = subprocess.Popen(
            [*build_command(machine), "-S"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            # QEMU opens them as it starts; a loaded machine starts it late.
            deadline = time.monotonic() + 60
            while not (
                (folder / "serial.log").exists() and (Path(sockets) / "q,mp.sock").is_socket()
            ):
                assert proc.poll() is None, "QEMU exited"
                assert time.monotonic() < deadline, "QEMU did not open its files within 60 s"
                time.sleep(0.05)
            assert proc.poll() is None
        finally:
            proc.kill()
            _, stderr = proc.communicate()
    assert stderr == b""
    assert sorted(p.name for p in folder.iterdir()) == ["disk,x.raw", "serial.log"]


@needs_qemu
def test_qemu_accepts_the_command_line(short_dir: Path) -> None:
    # -S: QEMU parses everything and sets the machine up, but runs no guest code.
    disk = short_dir / "disk.raw"
    seed = short_dir / "seed.iso"
    disk.write_bytes(bytes(1 << 20))
    seed.write_bytes(bytes(64 << 10))
    machine = config(short_dir, disk=disk, disk_format="raw", seed=seed, ssh_port=free_port())
    proc = subprocess.Popen(
        [*build_command(machine), "-S"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    finally:
        proc.kill()
        _, stderr = proc.communicate()
    assert stderr == b""


# --- free_port ---------------------------------------------------------------


def test_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
        s.listen()


# --- the accelerator probe ---------------------------------------------------


@pytest.fixture
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOLDSMITH_ACCEL", raising=False)
    monkeypatch.setattr(accel_probe, "_probed", {})


@pytest.mark.parametrize("forced", ["kvm", "tcg"])
def test_goldsmith_accel_overrides_the_probe(forced: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDSMITH_ACCEL", forced)

    def no_probe(*args: object) -> tuple[bool, str]:
        raise AssertionError("the probe ran despite GOLDSMITH_ACCEL")

    monkeypatch.setattr(accel_probe, "_probe_boot_sector", no_probe)
    assert probe_accelerator() is Accelerator(forced)


def test_a_bad_goldsmith_accel_is_a_tool_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDSMITH_ACCEL", "hvf")
    with pytest.raises(ToolError) as info:
        probe_accelerator()
    assert "GOLDSMITH_ACCEL='hvf'" in info.value.message
    assert "'kvm' or 'tcg'" in info.value.message


@pytest.mark.usefixtures("fresh_probe")
def test_no_usable_dev_kvm_means_tcg_without_booting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel_probe, "_kvm_usable", lambda: False)

    def no_probe(*args: object) -> tuple[bool, str]:
        raise AssertionError("no boot is needed to know KVM is unusable")

    monkeypatch.setattr(accel_probe, "_probe_boot_sector", no_probe)
    monkeypatch.setattr(accel_probe, "_probe_kernel", no_probe)
    assert probe_accelerator(Path("/boot/vmlinuz")) is Accelerator.tcg


@pytest.mark.usefixtures("fresh_probe")
def test_kvm_is_chosen_when_the_boot_sector_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel_probe, "_kvm_usable", lambda: True)
    calls: list[str] = []

    def sector(workdir: Path, timeout: float) -> tuple[bool, str]:
        calls.append("sector")
        return True, "ok"

    monkeypatch.setattr(accel_probe, "_probe_boot_sector", sector)
    assert probe_accelerator() is Accelerator.kvm
    # The answer is remembered: a second build step does not probe again.
    assert probe_accelerator() is Accelerator.kvm
    assert calls == ["sector"]


@pytest.mark.usefixtures("fresh_probe")
def test_a_kvm_that_cannot_run_the_boot_sector_means_tcg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel_probe, "_kvm_usable", lambda: True)
    monkeypatch.setattr(accel_probe, "_probe_boot_sector", lambda w, t: (False, "exit 1"))
    assert probe_accelerator() is Accelerator.tcg


@pytest.mark.usefixtures("fresh_probe")
def test_a_kvm_that_cannot_boot_the_kernel_means_tcg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel_probe, "_kvm_usable", lambda: True)
    monkeypatch.setattr(accel_probe, "_probe_boot_sector", lambda w, t: (True, "ok"))
    kernels: list[Path] = []

    def kernel_probe(workdir: Path, kernel: Path, timeout: float) -> tuple[bool, str]:
        kernels.append(kernel)
        return False, "no panic reached"

    monkeypatch.setattr(accel_probe, "_probe_kernel", kernel_probe)
    assert probe_accelerator(Path("/cache/vmlinuz")) is Accelerator.tcg
    assert kernels == [Path("/cache/vmlinuz")]


@pytest.mark.usefixtures("fresh_probe")
def test_a_kvm_that_hangs_on_the_boot_sector_means_tcg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel_probe, "_kvm_usable", lambda: True)

    def hang(cmd: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        # What run() raises when QEMU outlives its timeout.
        raise ToolError(f"{QEMU} did not finish within 30s")

    monkeypatch.setattr(accel_probe, "run", hang)
    assert probe_accelerator() is Accelerator.tcg


def probe_image(workdir: Path) -> Path:
    image = workdir / "sector.img"
    image.write_bytes(accel_probe._PROBE_SECTOR.ljust(510, b"\0") + b"\x55\xaa")
    return image


@needs_qemu
def test_the_probe_boot_sector_runs_under_tcg(tmp_path: Path) -> None:
    image = probe_image(tmp_path)
    serial = tmp_path / "serial.log"
    cmd = [
        *(QEMU, "-accel", "tcg", "-m", "64", "-nodefaults", "-display", "none"),
        *("-no-reboot", "-chardev", f"file,id=s0,path={serial}", "-serial", "chardev:s0"),
        *("-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"),
        *("-drive", f"file={image},format=raw,if=ide"),
    ]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    assert len(image.read_bytes()) == 512
    assert proc.returncode == accel_probe._PROBE_EXIT == 33
    assert serial.read_bytes() == b"K"


@needs_qemu
def test_probe_boot_sector_judges_a_real_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module's own image and argv, with only the accelerator swapped for TCG.
    seen: list[list[str]] = []

    def under_tcg(
        cmd: Sequence[str], *, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(c) for c in cmd]
        seen.append(list(argv))
        argv[argv.index("-accel") + 1] = "tcg"
        argv[argv.index("-cpu") + 1] = "max"
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )

    monkeypatch.setattr(accel_probe, "run", under_tcg)
    ok, why = accel_probe._probe_boot_sector(tmp_path, timeout=20)

    assert ok, why
    assert "exit 33" in why
    assert value_of(seen[0], "-accel") == "kvm"
    image = tmp_path / "probe.img"
    assert image.read_bytes()[-2:] == b"\x55\xaa" and len(image.read_bytes()) == 512


def test_probe_boot_sector_fails_without_the_serial_k(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exits_33_silently(
        cmd: Sequence[str], *, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        (tmp_path / "probe-sector.log").write_bytes(b"")
        return subprocess.CompletedProcess(list(cmd), 33, "", "")

    monkeypatch.setattr(accel_probe, "run", exits_33_silently)
    ok, _ = accel_probe._probe_boot_sector(tmp_path, timeout=1)
    assert not ok


# --- start_vm ---------------------------------------------------------------


@needs_qemu
def test_start_vm_that_cannot_start_raises_and_leaves_no_process(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = real_popen(*args, **kwargs)
        started.append(proc)
        return proc

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    handler_before = signal.getsignal(signal.SIGTERM)
    machine = config(short_dir, disk=short_dir / "missing.qcow2")

    with pytest.raises(GuestError) as info, start_vm(machine, stop_timeout=1):
        pytest.fail("the block must not run")

    assert "QEMU exited at start" in info.value.message
    assert "missing.qcow2" in info.value.message
    assert len(started) == 1 and started[0].poll() is not None
    assert signal.getsignal(signal.SIGTERM) == handler_before
    # QEMU's complaint is kept beside the serial log.
    assert "missing.qcow2" in (short_dir / "serial.qemu-stderr").read_text()


@needs_qemu
def test_start_vm_stops_qemu_when_the_block_fails(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A paused machine (-S) ignores the power button, so every fallback is exercised.
    paused = build_command
    monkeypatch.setattr(qemu, "build_command", lambda c: [*paused(c), "-S"])
    disk = short_dir / "disk.raw"
    disk.write_bytes(bytes(1 << 20))
    machine = config(short_dir, disk=disk, disk_format="raw", memory=64, cpus=1)
    handler_before = signal.getsignal(signal.SIGTERM)

    with (
        pytest.raises(RuntimeError, match="provisioning broke"),
        start_vm(machine, stop_timeout=0.2) as vm,
    ):
        assert vm.running
        assert signal.getsignal(signal.SIGTERM) != handler_before
        raise RuntimeError("provisioning broke")

    assert not vm.running
    assert vm.proc.returncode is not None
    assert signal.getsignal(signal.SIGTERM) == handler_before


@needs_qemu
def test_start_vm_runs_from_a_folder_deeper_than_a_socket_path_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cache and CI work folders easily pass the 108-byte unix socket limit.
    paused = build_command
    monkeypatch.setattr(qemu, "build_command", lambda c: [*paused(c), "-S"])
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    disk = deep / "disk.raw"
    disk.write_bytes(bytes(1 << 20))
    machine = config(deep, disk=disk, disk_format="raw", memory=64, cpus=1, qmp_socket=None)
    assert len(str(deep / "qmp.sock")) > 108
    with start_vm(machine, stop_timeout=0.2) as vm:
        assert vm.running
        socket_path = vm.config.qmp_socket
        assert socket_path is not None and len(str(socket_path)) < 108
        assert socket_path.exists()
    assert not vm.running
    assert not socket_path.parent.exists()


@needs_qemu
def test_an_interrupted_block_kills_qemu_at_once(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C must not wait out a graceful power-off: a paused machine ignores
    # the power button, so a stop would take the whole stop_timeout.
    paused = build_command
    monkeypatch.setattr(qemu, "build_command", lambda c: [*paused(c), "-S"])
    disk = short_dir / "disk.raw"
    disk.write_bytes(bytes(1 << 20))
    machine = config(short_dir, disk=disk, disk_format="raw", memory=64, cpus=1)
    handler_before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()

    with pytest.raises(KeyboardInterrupt), start_vm(machine, stop_timeout=60) as vm:
        assert vm.running
        raise KeyboardInterrupt

    assert time.monotonic() - started < 10
    assert not vm.running
    assert signal.getsignal(signal.SIGTERM) == handler_before


@needs_qemu
def test_qmp_answers_on_the_chardev_socket(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paused = build_command
    monkeypatch.setattr(qemu, "build_command", lambda c: [*paused(c), "-S"])
    folder = short_dir / "a,b"
    folder.mkdir()
    disk = folder / "disk.raw"
    disk.write_bytes(bytes(1 << 20))
    machine = config(folder, disk=disk, disk_format="raw", memory=64, cpus=1, qmp_socket=None)
    with start_vm(machine, stop_timeout=0.2) as vm:
        vm.qmp("query-status")  # raises OSError if nothing speaks QMP there
        vm.qmp("quit")
        assert vm.wait(10) is not None


@needs_qemu
def test_a_discarded_machine_quits_without_waiting_for_a_power_off(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A paused machine ignores the power button: only QMP quit ends it quickly.
    paused = build_command
    monkeypatch.setattr(qemu, "build_command", lambda c: [*paused(c), "-S"])
    disk = short_dir / "disk.raw"
    disk.write_bytes(bytes(1 << 20))
    machine = config(short_dir, disk=disk, disk_format="raw", memory=64, cpus=1, qmp_socket=None)
    with start_vm(machine, stop_timeout=60) as vm:
        started = time.monotonic()
        vm.discard()
        assert time.monotonic() - started < 10
        assert not vm.running
        # QEMU exited on its own (quit), not from SIGKILL.
        assert vm.proc.returncode == 0


# --- firmware and TPM ---------------------------------------------------------

needs_firmware_tools = pytest.mark.skipif(
    shutil.which(QEMU) is None
    or shutil.which("swtpm") is None
    or not (fw.OVMF_DIR / "OVMF_CODE_4M.secboot.fd").is_file(),
    reason="qemu-system-x86, ovmf and swtpm are needed",
)


def uefi_config(folder: Path, firmware: Firmware, accelerator: Accelerator, **changes: Any) -> Any:
    return config(
        folder,
        firmware=firmware,
        accelerator=accelerator,
        firmware_code=folder / "code.fd",
        firmware_vars=folder / "vars.fd",
        **changes,
    )


def pflash(cmd: Sequence[str]) -> list[list[tuple[str, str]]]:
    return [qemu_options(v) for v in values_of(cmd, "-drive") if "if=pflash" in v]


@pytest.mark.parametrize("accelerator", [Accelerator.kvm, Accelerator.tcg])
def test_bios_boots_without_pflash_or_smm(tmp_path: Path, accelerator: Accelerator) -> None:
    cmd = build_command(config(tmp_path, accelerator=accelerator))
    assert pflash(cmd) == []
    assert "-global" not in cmd
    assert "smm" not in value_of(cmd, "-machine")
    # The BIOS disk is the plain virtio drive SeaBIOS has always booted.
    assert "if=virtio" in value_of(cmd, "-drive").split(",")


@pytest.mark.parametrize("accelerator", [Accelerator.kvm, Accelerator.tcg])
def test_uefi_boots_ovmf_code_read_only_and_its_own_vars(
    tmp_path: Path, accelerator: Accelerator
) -> None:
    cmd = build_command(uefi_config(tmp_path, Firmware.uefi, accelerator, seed=tmp_path / "s.iso"))

    assert value_of(cmd, "-machine") == "q35"
    assert value_of(cmd, "-accel") == str(accelerator)
    assert value_of(cmd, "-cpu") == ("host" if accelerator is Accelerator.kvm else "max")
    code, store = pflash(cmd)
    assert code == [
        ("if", "pflash"),
        ("format", "raw"),
        ("unit", "0"),
        ("readonly", "on"),
        ("file", str(tmp_path / "code.fd")),
    ]
    assert store == [
        ("if", "pflash"),
        ("format", "raw"),
        ("unit", "1"),
        ("file", str(tmp_path / "vars.fd")),
    ]
    # No SMM and no secure flash without Secure Boot.
    assert "-global" not in cmd
    # The disk is booted first (fw_cfg boot order), never the network.
    disk = next(qemu_options(v) for v in values_of(cmd, "-drive") if "overlay" in v)
    assert ("if", "none") in disk and ("id", "disk0") in disk
    assert "virtio-blk-pci,drive=disk0,bootindex=0" in values_of(cmd, "-device")
    # Firmware first on the command line: pflash units before any other drive.
    drives = values_of(cmd, "-drive")
    assert [("pflash" in d) for d in drives] == [True, True, False, False]


@pytest.mark.parametrize("accelerator", [Accelerator.kvm, Accelerator.tcg])
def test_secure_boot_takes_smm_and_secure_flash(tmp_path: Path, accelerator: Accelerator) -> None:
    cmd = build_command(uefi_config(tmp_path, Firmware.uefi_secureboot, accelerator))

    assert value_of(cmd, "-machine") == "q35,smm=on"
    assert values_of(cmd, "-global") == [
        "driver=cfi.pflash01,property=secure,value=on",
        "ICH9-LPC.disable_s3=1",
    ]
    code, store = pflash(cmd)
    assert ("readonly", "on") in code and ("unit", "0") in code
    assert ("readonly", "on") not in store and ("unit", "1") in store


@pytest.mark.parametrize("firmware", [Firmware.uefi, Firmware.uefi_secureboot])
def test_kvm_and_tcg_differ_only_in_accelerator_and_cpu_for_uefi(
    tmp_path: Path, firmware: Firmware
) -> None:
    kvm = build_command(uefi_config(tmp_path, firmware, Accelerator.kvm, ssh_port=1))
    tcg = build_command(uefi_config(tmp_path, firmware, Accelerator.tcg, ssh_port=1))
    differ = [(a, b) for a, b in zip(kvm, tcg, strict=True) if a != b]
    assert differ == [("kvm", "tcg"), ("host", "max")]


def test_uefi_without_its_files_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="firmware_code"):
        build_command(config(tmp_path, firmware=Firmware.uefi))


@pytest.mark.parametrize("firmware", list(Firmware))
@pytest.mark.parametrize("accelerator", [Accelerator.kvm, Accelerator.tcg])
def test_a_tpm_is_a_tis_device_on_the_swtpm_socket(
    tmp_path: Path, firmware: Firmware, accelerator: Accelerator
) -> None:
    folder = tmp_path / "a,b"
    machine = (
        uefi_config(folder, firmware, accelerator)
        if firmware.is_uefi
        else config(folder, accelerator=accelerator)
    )
    cmd = build_command(dataclasses.replace(machine, tpm=True, tpm_socket=folder / "tpm.sock"))

    chardevs = [qemu_options(v) for v in values_of(cmd, "-chardev")]
    assert [("socket", ""), ("id", "chrtpm"), ("path", str(folder / "tpm.sock"))] in chardevs
    assert value_of(cmd, "-tpmdev") == "emulator,id=tpm0,chardev=chrtpm"
    assert "tpm-tis,tpmdev=tpm0" in values_of(cmd, "-device")


def test_no_tpm_unless_asked(tmp_path: Path) -> None:
    cmd = build_command(config(tmp_path))
    assert "-tpmdev" not in cmd
    assert not any(d.startswith("tpm") for d in values_of(cmd, "-device"))
    assert not any("chrtpm" in c for c in values_of(cmd, "-chardev"))
    with pytest.raises(ValueError, match="tpm_socket"):
        build_command(config(tmp_path, tpm=True))


def test_swtpm_command_keeps_its_state_private(tmp_path: Path) -> None:
    cmd = fw.swtpm_command(tmp_path / "tpm", tmp_path / "s.sock", tmp_path / "l.log")
    assert cmd[:4] == ["swtpm", "socket", "--tpm2", "--terminate"]
    assert value_of(cmd, "--tpmstate") == f"dir={tmp_path / 'tpm'},mode=0600"
    assert value_of(cmd, "--ctrl") == f"type=unixio,path={tmp_path / 's.sock'},mode=0600"
    with pytest.raises(ToolError, match="comma"):
        fw.swtpm_command(tmp_path / "a,b", tmp_path / "s.sock", tmp_path / "l.log")


def test_ovmf_files_per_firmware(tmp_path: Path) -> None:
    for name in (
        "OVMF_CODE_4M.fd",
        "OVMF_VARS_4M.fd",
        "OVMF_CODE_4M.secboot.fd",
        "OVMF_VARS_4M.ms.fd",
    ):
        (tmp_path / name).write_bytes(b"fd")
    plain = fw.ovmf_files(Firmware.uefi, tmp_path)
    assert (plain.code.name, plain.vars_template.name) == ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd")
    secure = fw.ovmf_files(Firmware.uefi_secureboot, tmp_path)
    # The SMM build, and a store with Microsoft's keys enrolled (they sign shim).
    assert (secure.code.name, secure.vars_template.name) == (
        "OVMF_CODE_4M.secboot.fd",
        "OVMF_VARS_4M.ms.fd",
    )
    (tmp_path / "OVMF_VARS_4M.ms.fd").unlink()
    with pytest.raises(ToolError, match=r"OVMF_VARS_4M\.ms\.fd not found") as info:
        fw.ovmf_files(Firmware.uefi_secureboot, tmp_path)
    assert info.value.hint is not None and "apt-get install ovmf" in info.value.hint
    with pytest.raises(ValueError):
        fw.ovmf_files(Firmware.bios, tmp_path)


@needs_firmware_tools
@pytest.mark.parametrize("firmware", list(Firmware))
def test_start_vm_gives_each_machine_its_vars_and_tpm_and_removes_them(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch, firmware: Firmware
) -> None:
    paused = build_command
    monkeypatch.setattr(qemu, "build_command", lambda c: [*paused(c), "-S"])
    disk = short_dir / "disk.raw"
    disk.write_bytes(bytes(1 << 20))
    machine = config(
        short_dir,
        disk=disk,
        disk_format="raw",
        memory=64,
        cpus=1,
        qmp_socket=None,
        firmware=firmware,
        tpm=True,
    )
    with start_vm(machine, stop_timeout=0.2) as vm:
        assert vm.running
        private = vm.config.tpm_socket.parent if vm.config.tpm_socket else None
        assert private is not None and vm.config.tpm_socket is not None
        assert vm.config.tpm_socket.is_socket()
        if firmware.is_uefi:
            store = vm.config.firmware_vars
            assert store is not None and store.parent == private
            # A copy, never the package's own store.
            assert store.read_bytes() == fw.ovmf_files(firmware).vars_template.read_bytes()
            assert vm.config.firmware_code == fw.ovmf_files(firmware).code
        else:
            assert vm.config.firmware_vars is None
    assert not vm.running
    assert not private.exists()
