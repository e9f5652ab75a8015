"""Packer against goldsmith on the same base and the same work (issue 16).

    python -m tests.bench.packer [--spec baseline|cis-level1|PATH] [--rounds 3] [--out DIR]

Each round runs, one after the other:

- ``packer build`` (Debian's packer, installed here when missing) of a
  template made here: Packer's qemu builder on a copy-on-write overlay of
  goldsmith's own cached base for the spec, booted from firmware (SeaBIOS) on
  the machine goldsmith's build VM uses, the guest reached over SSH with
  goldsmith's one-run key from a NoCloud seed made by ``builder.seed``; one
  shell provisioner waits for cloud-init, upgrades every package and runs the
  apply script goldsmith renders for the spec's profile; the shutdown command
  is goldsmith's seal script; Packer then compacts the disk to a compressed
  qcow2 (``disk_compression``).
- ``goldsmith build SPEC --force`` into a fresh folder.
- ``goldsmith release SPEC --key K`` (a fresh key) into a fresh folder:
  build, fresh-boot validation and signature.

It prints each run's wall time, the medians, the ratios goldsmith
build / Packer and goldsmith release / Packer, and the stages: Packer's from
the times its output lines arrived, goldsmith's from build.json (and
validation.json). A benchmark, not a test: it asserts nothing about speed; it
exits 1 when a run failed. The base is prepared (bootstrapped on a cold
cache) before the first round and timed in no run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from builder import accel_probe, qemu_command
from builder.base import prepare_base, qemu_img_info
from builder.build import APT, BUILDER_USER, plan_build
from builder.firmware import Firmware
from builder.log import setup_logging
from builder.seal import render_seal_script, sealing_plan
from builder.seed import GuestAccess, new_access, render_seed_files, write_seed_iso
from builder.spec import TemplateSpec, load_spec

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = {
    "baseline": REPO / "templates/debian-12-baseline.yaml",
    "cis-level1": REPO / "templates/debian-12-cis-level1.yaml",
}
REMOTE_SEAL = f"/home/{BUILDER_USER}/goldsmith-seal.sh"
TOOLS = ("packer", "build", "release")
TOOL_NAMES = {
    "packer": "packer build",
    "build": "goldsmith build",
    "release": "goldsmith release",
}
# Packer's own progress lines that open each of its stages; the stage before
# the first is "prepare" (overlay, resize, ports). The seal's last line opens
# the wait for power-off.
PACKER_MARKS: tuple[tuple[str, re.Pattern[str], bool], ...] = (
    ("boot", re.compile(r"Starting VM, booting disk image"), False),
    ("upload", re.compile(r"Connected to SSH!"), False),
    ("cloud-init", re.compile(r"Provisioning with shell script: .*cloud-init\.sh$"), False),
    ("upgrade", re.compile(r"Provisioning with shell script: .*upgrade\.sh$"), False),
    ("harden", re.compile(r"Provisioning with shell script: .*harden\.sh$"), False),
    ("seal", re.compile(r"Gracefully halting virtual machine"), False),
    ("shutdown", re.compile(r"goldsmith-sealed: "), True),
    ("compact", re.compile(r"Converting hard drive"), False),
    ("finish", re.compile(r"Build '.*' finished"), False),
)


class BenchError(Exception):
    """The comparison cannot run as asked."""


@dataclasses.dataclass(frozen=True)
class PackerInputs:
    """Everything the Packer template names; paths are absolute."""

    base: Path
    base_format: str
    seed: Path
    private_key: Path
    seal_script: Path
    scripts: tuple[Path, ...]
    output_dir: Path
    serial_log: Path
    accelerator: qemu_command.Accelerator
    machine_type: str
    memory: int  # MiB
    cpus: int
    disk_size: int  # bytes
    boot_timeout: int  # seconds
    step_timeout: int
    shutdown_timeout: int


@dataclasses.dataclass(frozen=True)
class Run:
    tool: str  # one of TOOLS
    round: int
    seconds: float
    ok: bool
    stages: dict[str, float]
    size: int | None = None  # the compacted qcow2, bytes
    note: str = ""


def resolve_spec(value: str) -> Path:
    return TEMPLATES.get(value, Path(value)).resolve()


def check_supported(spec: TemplateSpec) -> None:
    """Packer 1.6.6's qemu builder has no pflash firmware and no TPM, and this
    comparison gives Packer no provisioning steps or proxy: refuse what it
    could not build alike rather than compare different work."""
    if spec.firmware is not Firmware.bios:
        raise BenchError(f"{spec.path}: firmware {spec.firmware}; this comparison is BIOS only")
    if spec.tpm:
        raise BenchError(f"{spec.path}: tpm: true; Packer 1.6.6's qemu builder has no TPM")
    if spec.provision or spec.apt_proxy is not None:
        raise BenchError(f"{spec.path}: provisioning steps or an apt proxy are not compared here")


def ensure_packer() -> str:
    """Debian's packer (1.6.6 on bookworm), installed when missing; its version line."""
    if shutil.which("packer") is None:
        print("packer is missing: apt-get install -y packer", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "packer"]
        if subprocess.run(install, env=env, stdout=sys.stderr, check=False).returncode != 0:
            # Stale package lists on a fresh machine: refresh once and retry.
            subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=sys.stderr, check=True)
            subprocess.run(install, env=env, stdout=sys.stderr, check=True)
    out = subprocess.run(
        ["packer", "version"], env=packer_env(None), capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()[0].strip()


def packer_env(cache: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    # No call to HashiCorp's version service from a build machine.
    env["CHECKPOINT_DISABLE"] = "1"
    if cache is not None:
        # Packer takes a lock file in its cache even for a local image used in
        # place; keep it in the run's folder, not in the working directory.
        env["PACKER_CACHE_DIR"] = str(cache)
    return env


def guest_scripts(spec: TemplateSpec, apply_script: str) -> dict[str, str]:
    """The shell provisioner's scripts, in order: the work goldsmith's build VM
    does between boot and sealing (builder.build._prepare and _harden)."""
    wait = (
        "#!/bin/bash\n"
        "# goldsmith waits for cloud-init and goes on with a warning when it reports problems.\n"
        "rc=0\n"
        "cloud-init status --wait --long || rc=$?\n"
        'if [ "$rc" -ne 0 ]; then echo "cloud-init reported problems (exit $rc)" >&2; fi\n'
    )
    upgrade = ["#!/bin/bash"]
    if spec.upgrade:
        upgrade.append(f"{APT} update && {APT} -y dist-upgrade")
    elif spec.packages:
        upgrade.append(f"{APT} update")
    if spec.packages:
        upgrade.append(f"{APT} -y install " + " ".join(shlex.quote(n) for n in spec.packages))
    if len(upgrade) == 1:
        upgrade.append("true")
    return {
        "cloud-init.sh": wait,
        "upgrade.sh": "\n".join(upgrade) + "\n",
        "harden.sh": apply_script,
    }


def render_template(inputs: PackerInputs) -> dict[str, Any]:
    """A Packer 1.6 JSON template: the qemu builder and goldsmith's work."""
    qemuargs = [
        ["-cpu", "host" if inputs.accelerator is qemu_command.Accelerator.kvm else "max"],
        # Packer 1.6.6 has cd_files, but it needs xorriso or mkisofs and
        # writes its own volume; -cdrom adds goldsmith's seed beside Packer's
        # drives (a -drive here would replace all of Packer's, the disk too).
        ["-cdrom", str(inputs.seed)],
        # Packer forwards SSH on every host address; goldsmith on loopback only.
        ["-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"],
        # goldsmith's build VM has a virtio RNG; the same machine for both.
        ["-object", "rng-random,id=rng0,filename=/dev/urandom"],
        ["-device", "virtio-rng-pci,rng=rng0"],
        [
            "-chardev",
            f"file,id=serial0,path={qemu_command.option_value(qemu_command.file_arg(inputs.serial_log))}",
        ],
        ["-serial", "chardev:serial0"],
    ]
    builder: dict[str, Any] = {
        "type": "qemu",
        # The image is used in place (go-getter, Inplace) and only read: the
        # guest writes to an overlay in output_directory. "none": goldsmith
        # does not hash its cached base on each build either.
        "iso_url": str(inputs.base),
        "iso_checksum": "none",
        "disk_image": True,
        "use_backing_file": True,
        # Packer 1.6.6 creates the overlay without a backing format, which
        # QEMU >= 6.1 refuses.
        "qemu_img_args": {"create": ["-F", inputs.base_format]},
        "format": "qcow2",
        "disk_size": f"{-(-inputs.disk_size // 2**20)}M",
        # The drive options goldsmith's build VM uses: discards reach the
        # qcow2 (the seal's fstrim), and no flushes for a disposable disk.
        "disk_interface": "virtio",
        "disk_cache": "unsafe",
        "disk_discard": "unmap",
        "disk_compression": True,
        "accelerator": str(inputs.accelerator),
        "machine_type": inputs.machine_type,
        "memory": inputs.memory,
        "cpus": inputs.cpus,
        "headless": True,
        "net_device": "virtio-net",
        "output_directory": str(inputs.output_dir),
        "vm_name": "disk.qcow2",
        "qemuargs": qemuargs,
        "communicator": "ssh",
        "ssh_username": BUILDER_USER,
        # Packer 1.6.6 accepts any host key (InsecureIgnoreHostKey); goldsmith
        # pins the one in the seed. The forward is on loopback only.
        "ssh_private_key_file": str(inputs.private_key),
        "ssh_timeout": f"{inputs.boot_timeout}s",
        # sshd may answer before cloud-init has installed the key.
        "ssh_handshake_attempts": 100,
        # The seal as goldsmith runs it, its detached power-off included:
        # Packer then waits for the guest to power off and compacts the disk.
        # Packer ignores this command's exit status; a seal that fails never
        # powers off, and Packer fails at shutdown_timeout.
        "shutdown_command": f"sudo -n -- bash -euo pipefail {REMOTE_SEAL}",
        "shutdown_timeout": f"{inputs.shutdown_timeout}s",
    }
    provisioners: list[dict[str, Any]] = [
        # Uploaded first: after hardening, only the SSH connection already open
        # is certain to stay usable.
        {"type": "file", "source": str(inputs.seal_script), "destination": REMOTE_SEAL},
        {
            "type": "shell",
            "scripts": [str(script) for script in inputs.scripts],
            "execute_command": "sudo -n -- bash -euo pipefail '{{ .Path }}'",
            "timeout": f"{inputs.step_timeout * len(inputs.scripts)}s",
        },
    ]
    return {"builders": [builder], "provisioners": provisioners}


def write_inputs(
    work: Path,
    spec: TemplateSpec,
    base: Path,
    base_format: str,
    accelerator: qemu_command.Accelerator,
    apply_script: str,
    access: GuestAccess,
) -> PackerInputs:
    """The seed, key, scripts and template of one Packer run in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    seed = work / "seed.iso"
    write_seed_iso(seed, render_seed_files(access, hostname=spec.name))
    key = work / "ssh-key"
    key.touch(mode=0o600)
    key.write_text(access.client_key.private_openssh, encoding="utf-8")
    seal = work / "seal.sh"
    seal.write_text(
        # Packer ignores the exit status and keeps its SSH connection open
        # until the guest is gone: waiting for it to close would only cost
        # Packer the tail's 10 s cap, so its guest powers off at once.
        render_seal_script(
            sealing_plan(BUILDER_USER, access.client_key.blob),
            poweroff="systemctl poweroff --no-block",
        ),
        encoding="utf-8",
    )
    scripts = []
    for name, text in guest_scripts(spec, apply_script).items():
        path = work / name
        path.write_text(text, encoding="utf-8")
        scripts.append(path)
    config = qemu_command.MachineConfig(
        disk=base,
        accelerator=accelerator,
        memory=spec.vm.memory,
        cpus=spec.vm.cpus,
        serial_log=work / "serial.log",
        firmware=spec.firmware,
    )
    inputs = PackerInputs(
        base=base.resolve(),
        base_format=base_format,
        seed=seed.resolve(),
        private_key=key.resolve(),
        seal_script=seal.resolve(),
        scripts=tuple(p.resolve() for p in scripts),
        output_dir=(work / "output").resolve(),
        serial_log=(work / "serial.log").resolve(),
        accelerator=accelerator,
        machine_type=qemu_command.machine_type(config),
        memory=spec.vm.memory,
        cpus=spec.vm.cpus,
        disk_size=spec.disk_size,
        boot_timeout=spec.timeouts.boot,
        step_timeout=spec.timeouts.step,
        shutdown_timeout=spec.timeouts.shutdown,
    )
    template = work / "template.json"
    template.write_text(json.dumps(render_template(inputs), indent=2) + "\n", encoding="utf-8")
    return inputs


def packer_stages(events: Sequence[tuple[float, str]], total: float) -> dict[str, float]:
    """Stage durations from the seconds at which Packer's lines arrived."""
    starts: list[tuple[float, str]] = [(0.0, "prepare")]
    for name, pattern, last in PACKER_MARKS:
        hits = [t for t, line in events if pattern.search(line)]
        if hits:
            starts.append((hits[-1] if last else hits[0], name))
    starts.sort()
    ends = [t for t, _ in starts[1:]] + [total]
    return {name: round(end - t, 2) for (t, name), end in zip(starts, ends, strict=True)}


def run_packer(
    folder: Path,
    round_no: int,
    spec: TemplateSpec,
    base: Path,
    base_format: str,
    accelerator: qemu_command.Accelerator,
    apply_script: str,
) -> Run:
    work = folder / "packer"
    access = new_access(BUILDER_USER, "packer")
    inputs = write_inputs(work, spec, base, base_format, accelerator, apply_script, access)
    cmd = ["packer", "build", "-color=false", str(work / "template.json")]
    print(f"+ {' '.join(cmd)}", file=sys.stderr)
    events: list[tuple[float, str]] = []
    start = time.monotonic()
    try:
        with subprocess.Popen(
            cmd,
            cwd=work,
            env=packer_env(work),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                t = time.monotonic() - start
                events.append((t, line.rstrip("\n")))
                print(f"[packer {t:7.1f}s] {line.rstrip()}", file=sys.stderr, flush=True)
            rc = proc.wait()
        seconds = time.monotonic() - start
    finally:
        # The seed holds the one-run host key, the key file the client key.
        inputs.seed.unlink(missing_ok=True)
        inputs.private_key.unlink(missing_ok=True)
    disk = inputs.output_dir / "disk.qcow2"
    note = "" if rc == 0 else f"packer exit {rc}"
    size = None
    if rc == 0 and disk.is_file():
        size = disk.stat().st_size
        if qemu_img_info(disk).get("backing-filename"):
            note = "the output still has a backing file"
    elif rc == 0:
        note = f"no {disk}"
    return Run("packer", round_no, seconds, not note, packer_stages(events, seconds), size, note)


def goldsmith(*args: str | Path) -> subprocess.CompletedProcess[str]:
    # Progress stays on stderr; stdout is the JSON result.
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *map(str, args)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )


def run_goldsmith(tool: str, folder: Path, round_no: int, spec_path: Path) -> Run:
    out = folder / tool
    if tool == "build":
        args: list[str | Path] = ["build", spec_path, "--force", "--out", out, "--json"]
    else:
        key = folder / "signing-key"
        if goldsmith("keygen", key).returncode != 0:
            return Run(tool, round_no, 0.0, False, {}, note="keygen failed")
        args = ["release", spec_path, "--key", key, "--out", out, "--json"]
    print(f"+ goldsmith {' '.join(map(str, args))}", file=sys.stderr)
    start = time.monotonic()
    proc = goldsmith(*args)
    seconds = time.monotonic() - start
    try:
        artifact = Path(json.loads(proc.stdout)[0]["result"]["artifact"])
        record = json.loads((artifact / "build.json").read_text(encoding="utf-8"))
    except (ValueError, LookupError, TypeError, OSError):
        return Run(tool, round_no, seconds, False, {}, note=f"exit {proc.returncode}, no record")
    stages = {step["name"]: float(step["seconds"]) for step in record["steps"]}
    validation = artifact / "validation.json"
    if tool == "release" and validation.is_file():
        timings = json.loads(validation.read_text(encoding="utf-8")).get("timings", {})
        stages.update({f"validate {k}": float(v) for k, v in timings.items() if k != "total"})
    ok = proc.returncode == 0
    note = "" if ok else f"exit {proc.returncode}"
    return Run(tool, round_no, seconds, ok, stages, int(record["image"]["size"]), note)


def median_stages(runs: Iterable[Run]) -> dict[str, float]:
    names: dict[str, list[float]] = {}
    for run in runs:
        for name, seconds in run.stages.items():
            names.setdefault(name, []).append(seconds)
    return {name: statistics.median(values) for name, values in names.items()}


def format_stages(stages: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f}" for name, seconds in stages.items())


def report(runs: Sequence[Run], header: str) -> list[str]:
    """The table: each run, the medians of the runs that succeeded, the ratios
    and the stages."""
    lines = [header, ""]
    lines.append(f"{'round':<8}" + "".join(f"{TOOL_NAMES[t]:>20}" for t in TOOLS))
    rounds = sorted({run.round for run in runs})
    for round_no in rounds:
        cells = []
        for tool in TOOLS:
            run = next((r for r in runs if r.round == round_no and r.tool == tool), None)
            if run is None:
                cells.append("-")
            else:
                cells.append(f"{run.seconds:.1f} s" + ("" if run.ok else " FAILED"))
        lines.append(f"{round_no:<8}" + "".join(f"{c:>20}" for c in cells))
    medians: dict[str, float] = {}
    for tool in TOOLS:
        ok = [r.seconds for r in runs if r.tool == tool and r.ok]
        if ok:
            medians[tool] = statistics.median(ok)
    lines.append(
        f"{'median':<8}"
        + "".join(f"{(f'{medians[t]:.1f} s' if t in medians else '-'):>20}" for t in TOOLS)
    )
    lines.append("")
    for tool in ("build", "release"):
        if tool in medians and "packer" in medians:
            ratio = medians[tool] / medians["packer"]
            lines.append(f"{TOOL_NAMES[tool]} / packer build: {ratio:.2f}")
        else:
            lines.append(f"{TOOL_NAMES[tool]} / packer build: - (no successful pair)")
    lines.append("")
    lines.append("stages, median of the successful runs (s):")
    for tool in TOOLS:
        ok_runs = [r for r in runs if r.tool == tool and r.ok]
        if ok_runs:
            lines.append(f"  {TOOL_NAMES[tool]}: {format_stages(median_stages(ok_runs))}")
    lines.append("stages of each run (s):")
    for run in runs:
        state = "" if run.ok else f" [FAILED: {run.note}]"
        lines.append(
            f"  round {run.round} {TOOL_NAMES[run.tool]}{state}: {format_stages(run.stages)}"
        )
    sizes = []
    for tool in TOOLS:
        sized = [r.size for r in runs if r.tool == tool and r.ok and r.size is not None]
        if sized:
            sizes.append(f"{TOOL_NAMES[tool]} {statistics.median(sized) / 2**20:.1f} MiB")
    if sizes:
        lines.append("compressed qcow2, median: " + ", ".join(sizes))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--spec", default="baseline", help="baseline, cis-level1 or a spec file (a BIOS one)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    setup_logging(logging.INFO)
    spec_path = resolve_spec(args.spec)
    spec = load_spec(spec_path)
    try:
        check_supported(spec)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    version = ensure_packer()
    base = prepare_base(spec)
    accelerator = accel_probe.probe_accelerator(base.kernel)
    profile, apply_script, _ = plan_build(spec)
    folder = (args.out / f"packer-vs-goldsmith-{spec.name}").resolve()
    # This bench's own folder: each round starts from nothing.
    shutil.rmtree(folder, ignore_errors=True)
    runs: list[Run] = []
    for round_no in range(1, args.rounds + 1):
        here = folder / f"round-{round_no}"
        here.mkdir(parents=True)
        runs.append(
            run_packer(here, round_no, spec, base.path, base.format, accelerator, apply_script)
        )
        if round_no == 1 and not runs[-1].ok:
            # A template Packer cannot build compares nothing: no two VM builds for it.
            print(f"packer build failed ({runs[-1].note}); see its output above", file=sys.stderr)
            break
        for tool in ("build", "release"):
            runs.append(run_goldsmith(tool, here, round_no, spec_path))
        print(
            f"round {round_no}: "
            + ", ".join(
                f"{TOOL_NAMES[r.tool]} {r.seconds:.1f} s{'' if r.ok else ' FAILED'}"
                for r in runs
                if r.round == round_no
            ),
            file=sys.stderr,
        )
    header = (
        f"{version} against goldsmith: {spec.name} {spec.version}, profile {profile.id}, "
        f"{accelerator}, {args.rounds} round{'s' if args.rounds > 1 else ''}, "
        f"base {base.path} (sha256 {base.sha256[:12]})"
    )
    print("\n".join(report(runs, header)))
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
