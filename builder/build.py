"""goldsmith build: spec -> base -> build VM -> provision -> seal -> compact -> artifact."""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder import __version__, accel_probe, cloudinit, firmware, qemu, qemu_command
from builder.artifact import artifact_folder, utc_now
from builder.base import BaseImage, prepare_base, qemu_img_info
from builder.bootstrap import BIOS_CMDLINE
from builder.buildkey import base_identity, compute_build_key
from builder.cache import hash_file
from builder.errors import BuildError, GuestError
from builder.formats import Hardware, Output, OutputFormat, compact, make_outputs
from builder.log import complete_step, log, log_to_file
from builder.provision import host_secrets
from builder.provisioner import Provisioner
from builder.proxy import APT_CONF as APT_PROXY_CONF
from builder.proxy import ProxyValue, read_proxy
from builder.record import IMAGE_NAME, Artifact, BuildRecord
from builder.record_sections import BaseImage as RecordedBase
from builder.record_sections import BuildVM, StepTime
from builder.run import run
from builder.seal import render_seal_script, sealed_items, sealing_plan
from builder.spec import TemplateSpec, load_spec
from hardening.apply import render_apply_script
from hardening.profile import Profile, load_profile

if TYPE_CHECKING:
    from builder.ssh import Session

BUILDER_USER = "gsbuild"
# Acquire::Languages=none: the build needs package lists, not their
# descriptions' translations (6 MB of Translation-en for bookworm, fetched and
# indexed under emulation on every build); seal removes the lists anyway.
APT = (
    "export DEBIAN_FRONTEND=noninteractive; "
    "apt-get -q -o Acquire::Languages=none "
    "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
)


@dataclasses.dataclass
class StepTimer:
    steps: list[StepTime] = dataclasses.field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str, text: str, detail: Callable[[], str] | None = None) -> Iterator[None]:
        start = time.monotonic()
        status = "failed"
        try:
            with complete_step(text, detail=detail):
                yield
            status = "ok"
        finally:
            self.steps.append(StepTime(name, round(time.monotonic() - start, 2), status))


def tool_versions() -> dict[str, str]:
    versions = {"goldsmith": __version__, "qemu": qemu_command.qemu_version()}
    with contextlib.suppress(Exception):
        out = run(["mmdebstrap", "--version"], check=False).stdout.split()
        versions["mmdebstrap"] = out[-1] if out else "unknown"
    return versions


def image_info(path: Path) -> dict[str, Any]:
    return qemu_img_info(path)


@dataclasses.dataclass(frozen=True)
class BuildOutcome:
    artifact: Path
    build_key: str
    reused: bool  # True when an artifact with the same build key already existed


def plan_build(spec: TemplateSpec) -> tuple[Profile, str, str]:
    """The resolved profile, the rendered apply script and the build key: cheap, no VM."""
    profile = load_profile(spec.profile)  # bad input: a ProfileError, an InputError
    script = render_apply_script(profile)
    key = compute_build_key(spec, profile, base_identity(spec), script)
    return profile, script, key


def build_template(
    spec_path: Path, out: Path, *, force: bool = False, version: str | None = None
) -> BuildOutcome:
    """Build one spec into ``out/<name>-<version>/``.

    Input-addressed: when that folder holds an artifact built with the same
    build key, nothing is booted and the existing artifact is returned.
    ``version`` overrides the spec's (a release bumping the patch level).
    """
    spec = load_spec(spec_path)
    if version is not None:
        spec = dataclasses.replace(spec, version=version)
    profile, script, key = plan_build(spec)
    name = f"{spec.name}-{spec.version}"
    existing = out / name
    artifact = Artifact(existing)
    if not force and artifact.recorded_build_key() == key and artifact.image.is_file():
        log.info("%s is up to date (build key %s); nothing to do", name, key[7:19])
        return BuildOutcome(existing, key, reused=True)
    if existing.exists() and not force and artifact.recorded_build_key() is not None:
        log.info("%s exists with other inputs; rebuilding it", name)
        force = True
    # Read before anything is made: a missing secret is bad input, not a failed build.
    secrets = host_secrets(spec.provision, spec.path)
    proxy = read_proxy(spec.apt_proxy, spec.path)
    with artifact_folder(out, name, force=force) as work, log_to_file(work / "build.log"):
        record = _build_into(work, spec, profile, script, secrets, proxy)
        dataclasses.replace(record, build_key=key).write(Artifact(work).build_record)
    log.info("Template ready: %s", existing)
    return BuildOutcome(existing, key, reused=False)


def _build_into(
    work: Path,
    spec: TemplateSpec,
    profile: Profile,
    script: str,
    secrets: Mapping[str, str],
    proxy: ProxyValue | None = None,
) -> BuildRecord:
    # Imported here, not at the top: a no-op build never needs SSH or ISO code.
    from builder.seed import new_access, render_seed_files, write_seed_iso
    from builder.ssh import Session, wait_for_machine

    timer = StepTimer()
    started = utc_now()
    log.info("Building %s %s with profile %s", spec.name, spec.version, profile.id)
    with timer.step("base", "Preparing the base image"):
        base = prepare_base(spec, proxy)
    accel = accel_probe.probe_accelerator(base.kernel)
    overlay = work / "overlay.qcow2"
    run(
        [
            *("qemu-img", "create", "-q", "-f", "qcow2"),
            *("-b", qemu_command.file_arg(base.path), "-F", base.format),
            *(qemu_command.file_arg(overlay), str(spec.disk_size)),
        ]
    )
    access = new_access(BUILDER_USER, "build")
    seed = work / "seed.iso"
    write_seed_iso(seed, render_seed_files(access, hostname=spec.name))
    config = qemu_command.MachineConfig(
        disk=overlay,
        accelerator=accel,
        memory=spec.vm.memory,
        cpus=spec.vm.cpus,
        serial_log=work / "serial.log",
        seed=seed,
        ssh_port=qemu_command.free_port(),
        firmware=spec.firmware,
        tpm=spec.tpm,
        kernel_boot=build_vm_kernel(spec, base),
    )
    how = "the base's kernel directly" if config.kernel_boot else "from firmware"
    with qemu.start_vm(config, stop_timeout=spec.timeouts.shutdown) as vm:
        with timer.step(
            "boot", f"Booting the build VM ({accel}, {how})", lambda: vm.serial_tail(3)
        ):
            client = wait_for_machine(vm, access, timeout=spec.timeouts.boot)
        session = Session(client, secrets=[*secrets.values(), *(proxy.secrets if proxy else ())])
        provisioned: list[dict[str, Any]] = []
        try:
            platform = _check_platform(session, spec)
            if proxy is not None:
                # Before the first apt command; sealing removes it (builder.seal).
                session.run(
                    f"umask 077; cat > {APT_PROXY_CONF}", step="apt proxy", stdin=proxy.apt_conf()
                )
            identity = _prepare(session, spec, timer, access.host_key.fingerprint)
            if spec.provision:
                with timer.step("provision", f"Provisioning ({len(spec.provision)} steps)"):
                    provisioner = Provisioner(
                        session,
                        machine=vm,
                        access=access,
                        spec_path=spec.path,
                        secrets=secrets,
                        boot_timeout=spec.timeouts.boot,
                        step_timeout=spec.timeouts.step,
                    )
                    try:
                        provisioned = provisioner.run_all(spec.provision)
                    finally:
                        session = provisioner.session  # a reboot step reconnects
            _harden(session, profile, script, timer, spec.timeouts.step)
            # Public half only: validation proves this key is in no authorized_keys.
            identity = dataclasses.replace(
                identity,
                builder_key=access.client_key.public_openssh,
                # Public values the block scan searches the sealed disk for.
                host_key=access.host_key.public_openssh,
                instance_id=f"goldsmith-{access.run_id}",  # the seed's meta-data
            )
            with timer.step("seal", "Sealing"):
                plan = sealing_plan(BUILDER_USER, access.client_key.blob)
                sealed = session.run(
                    render_seal_script(plan), step="seal", timeout=spec.timeouts.step
                )
                removed = sealed_items(sealed.output)
        finally:
            session.close()
        with timer.step("shutdown", "Waiting for the build VM to power off"):
            if vm.wait(spec.timeouts.shutdown) is None:
                raise GuestError(
                    f"the build VM did not power off within {spec.timeouts.shutdown}s after sealing"
                )
    seed.unlink()
    disk = work / IMAGE_NAME
    with timer.step("compact", "Compacting the template"):
        compact(overlay, disk, spec.compression)
        overlay.unlink()
    info = image_info(disk)
    if info.get("backing-filename") or info.get("format-specific", {}).get("data", {}).get(
        "data-file"
    ):
        raise BuildError(f"{disk}: the compacted template still depends on another file")
    with timer.step("scrub", "Zeroing free blocks freed at power-off"):
        _zero_stray_free_blocks(disk)
    with timer.step("digest", "Hashing the template"):
        digests = hash_file(disk, "sha256", "sha512")
    # Every other format is converted from the compacted qcow2, which stays the
    # template validation boots; each output is hashed from its own file.
    hardware = Hardware(
        spec.name,
        spec.version,
        cpus=spec.vm.cpus,
        memory=spec.vm.memory,
        efi=spec.firmware.is_uefi,
        secure_boot=spec.firmware is firmware.Firmware.uefi_secureboot,
    )
    outputs = [
        Output(
            OutputFormat.qcow2, disk.name, digests["sha256"], digests["sha512"], disk.stat().st_size
        ),
        *make_outputs(disk, spec.outputs, hardware, step=timer.step),
    ]
    return BuildRecord(
        template_name=spec.name,
        template_version=spec.version,
        spec_path=str(spec.path),
        spec_sha256=spec.sha256,
        profile_id=profile.id,
        profile_version=profile.version,
        profile_digest=profile.digest,
        profile_source=str(profile.source),
        base=(base_record(base),),
        image_path=disk.name,
        image_sha256=digests["sha256"],
        image_sha512=digests["sha512"],
        image_virtual_size=int(info["virtual-size"]),
        image_size=disk.stat().st_size,
        image_compression=str(spec.compression),
        recorded_outputs=tuple(outputs),
        steps=tuple(timer.steps),
        tools=tool_versions(),
        accelerator=str(accel),
        firmware_record=platform,
        build_vm=identity,
        # Each step with the digests of its inputs (paths relative to the spec)
        # and the names, never the values, of the host secrets it was given.
        provision=tuple(provisioned),
        # The proxy's variable name, never its URL (which may hold credentials).
        apt_proxy=spec.apt_proxy.record() if spec.apt_proxy else None,
        sealed=tuple(removed),
        started=started,
        finished=utc_now(),
    )


def build_vm_kernel(spec: TemplateSpec, base: BaseImage) -> qemu_command.KernelBoot | None:
    """The build VM boots the base's own kernel and initrd directly where
    that changes nothing in the template: a BIOS base goldsmith bootstrapped,
    whose kernel and initrd are cached with its disk (the files of its /boot),
    and a spec with no reboot step. Firmware and GRUB then take no time (3-4 s
    under TCG), and GRUB writes nothing on a BIOS boot that this would skip.
    The command line is the one the base's GRUB passes, its root the single
    partition of the bootstrap's BIOS layout on the first virtio disk.

    Every other build boots from firmware: a UEFI or Secure Boot build must
    go through the firmware it proves, a reboot step must come back through
    GRUB to the kernel the upgrade installed (a direct boot would restart
    the base's), and a file or URL base's kernel is not known to goldsmith.
    Validation always boots the template from firmware."""
    if spec.firmware is not firmware.Firmware.bios or base.own_kernel is None:
        return None
    if any(step.kind == "reboot" for step in spec.provision):
        return None
    kernel, initrd = base.own_kernel
    if not (kernel.is_file() and initrd.is_file()):
        return None
    return qemu_command.KernelBoot(
        kernel=kernel, initrd=initrd, append=f"root=/dev/vda1 ro {BIOS_CMDLINE} quiet"
    )


def base_record(base: BaseImage) -> RecordedBase:
    """The base as build.json records it: what it is, by digest, and its size."""
    entry = base.record()
    fixed = ("source", "name", "uri", "digest")
    return RecordedBase(
        name=entry["name"],
        uri=entry["uri"],
        source=entry["source"],
        digest=entry["digest"],
        details={
            **{k: v for k, v in entry.items() if k not in fixed},
            "size": base.path.stat().st_size,
        },
    )


def _zero_stray_free_blocks(disk: Path) -> None:
    """Sealing zeroes free space from inside the guest, but a file deleted
    while a process still holds it (a library the upgrade replaced, mapped by
    a daemon started before it) is freed only when that process exits, at
    power-off, after the zeroing. The compacted image is read once more (its
    ext2/3/4 bitmaps and the free blocks' contents) and every free block still
    holding bytes is zeroed in place with qemu-io. The validation's block scan
    proves the result independently."""
    # The block scan's reader and bitmap parser, shared rather than written twice.
    from validate.blockscan import free_blocks_with_bytes

    ranges = free_blocks_with_bytes(disk)
    if not ranges:
        log.info("  no free block holds data")
        return
    for first in range(0, len(ranges), 1000):  # a bounded command line
        batch = ranges[first : first + 1000]
        commands = [arg for at, length in batch for arg in ("-c", f"write -z {at} {length}")]
        run(["qemu-io", "-f", "qcow2", *commands, qemu_command.file_arg(disk)])
    log.info(
        "  zeroed %d KiB of free blocks in %d ranges, freed after the seal's zeroing",
        sum(length for _, length in ranges) // 1024,
        len(ranges),
    )


def _check_platform(session: Session, spec: TemplateSpec) -> dict[str, Any]:
    """The firmware and TPM the build VM booted with, as the guest saw them;
    a build VM that contradicts the spec (no Secure Boot, no TPM) stops here."""
    probe = session.run(firmware.PLATFORM_PROBE, step="platform")
    state = firmware.parse_platform(probe.output)
    problem = firmware.platform_problem(spec.firmware, spec.tpm, state)
    if problem is not None:
        raise GuestError(f"the build VM does not match the spec: {problem}")
    log.info(
        "Firmware %s: Secure Boot %s, TPM %s",
        spec.firmware,
        state.secure_boot_text(),
        "present" if state.tpm else "absent",
    )
    return {**firmware.firmware_record(spec.firmware, spec.tpm), "observed": state.record()}


def _prepare(session: Session, spec: TemplateSpec, timer: StepTimer, pinned: str) -> BuildVM:
    """cloud-init done, the guest's identity recorded, packages upgraded and installed."""
    with timer.step("cloud-init", "Waiting for cloud-init to finish"):
        waited = session.run(cloudinit.wait_script(spec.timeouts.step), step="cloud-init")
        settled = cloudinit.read_status(waited.output)
        if not settled.done:
            log.warning("cloud-init %s in the build VM: %s", settled.status, settled.text())
    machine_id = session.run("cat /etc/machine-id", step="identity").output
    keys = session.run(
        'for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf "$k"; done', step="identity"
    )
    host_keys = {}
    for line in keys.output.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            host_keys[parts[-1].strip("()").lower()] = parts[1]
    if pinned not in host_keys.values():
        raise GuestError("the build VM's host keys do not include the one goldsmith pinned")
    timeout = spec.timeouts.step
    if spec.upgrade:
        with timer.step("upgrade", "Upgrading all packages"):
            session.run(f"{APT} update && {APT} -y dist-upgrade", step="upgrade", timeout=timeout)
    elif spec.packages:
        session.run(f"{APT} update", step="packages", timeout=timeout)
    if spec.packages:
        with timer.step("packages", f"Installing {len(spec.packages)} packages"):
            # The spec loader admits only Debian package names; quoting them
            # anyway keeps this shell line safe whatever that pattern becomes.
            names = " ".join(shlex.quote(name) for name in spec.packages)
            session.run(f"{APT} -y install {names}", step="packages", timeout=timeout)
    return BuildVM(machine_id=machine_id.strip(), host_keys=host_keys)


def _harden(
    session: Session, profile: Profile, script: str, timer: StepTimer, timeout: float
) -> None:
    with timer.step("harden", f"Applying profile {profile.id} ({len(profile.controls)} controls)"):
        remote = f"/home/{BUILDER_USER}/goldsmith-apply.sh"
        session.put(script.encode(), remote)
        applied = session.run(f"bash -euo pipefail {remote}", step="harden", timeout=timeout)
        lines = applied.output.splitlines()
        changed = sum(1 for line in lines if line.startswith("goldsmith: changed "))
        log.info("  %d of %d controls changed the guest", changed, len(profile.controls))
