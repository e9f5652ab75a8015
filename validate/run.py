"""goldsmith validate: boot a sealed template as a deployer would and prove it."""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from builder import __version__
from builder.artifact import utc_now
from builder.cache import hash_file
from builder.cloudinit import CloudInitStatus, read_status, wait_script
from builder.errors import GuestError, InputError
from builder.log import complete_step, log, log_to_file
from builder.record import Artifact, BuildRecord
from builder.record_sections import BuildVM
from hardening.check import evaluate, gather_facts
from hardening.host import Host
from hardening.profile import Profile, load_profile
from hardening.results import CheckResult
from validate.blockscan import check_disk_blocks
from validate.boot import boot_artifact
from validate.host import pinned_host
from validate.hygiene import Expectations, check_hygiene
from validate.needles import Needle
from validate.platform import check_platform
from validate.report import write_html, write_junit
from validate.results import Package, ValidationRun
from validate.usertests import run_user_tests

PACKAGES_QUERY = (
    "dpkg-query -W -f "
    "'${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\n'"
)


def read_artifact(artifact: Path) -> BuildRecord:
    """The build record of an artifact folder that holds its disk image; InputError
    (exit 2) naming the file and field otherwise."""
    folder = Artifact(artifact)
    if not folder.image.is_file():
        raise InputError(artifact, None, "an artifact folder holding disk.qcow2 (not found)")
    return folder.read_build_record()


def load_build_record(artifact: Path) -> dict[str, Any]:
    """The build record of ``artifact`` as JSON data, read and checked by
    ``read_artifact``."""
    return read_artifact(artifact).to_dict()


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        timings[name] = round(time.monotonic() - start, 3)


def validate_artifact(
    artifact: Path,
    *,
    profile_ref: str | None = None,
    tests: Sequence[Path] = (),
    boot_timeout: float = 900,
    secret_needles: Sequence[Needle] = (),
) -> ValidationRun:
    """Boot, check, report. The artifact's disk is never written (digest checked).

    ``secret_needles``: values of secrets the build used, searched for in every
    block of the image besides those its provisioning steps named (read from the
    environment); held in memory, reported by name only.
    """
    record = read_artifact(artifact)
    # The template's own firmware and TPM, as built: the boot and the platform checks.
    firmware, tpm = record.firmware, record.tpm
    # A bad profile is an InputError (ProfileError) naming the profile's file.
    profile = load_profile(profile_ref or record.profile_source)
    folder = Artifact(artifact)
    disk = folder.image
    timings: dict[str, float] = {}
    started = utc_now()
    with (
        log_to_file(artifact / "validate.log"),
        complete_step(f"Validating {artifact.name} against profile {profile.id}"),
    ):
        before = hash_file(disk, "sha256", "sha512")
        # The image itself, outside any guest: what sealing left in any block.
        # The scan only reads the file, which the guest opens read-only as the
        # backing file of its overlay, so it runs while the guest boots (on a
        # host with spare cores it costs no time); its results are joined
        # before the run is written, so a hit still keeps the template
        # unapproved and unsigned.
        with contextlib.ExitStack() as stack:
            # Left in reverse order: the guest stops first, then the scan is
            # waited for, whatever happened in the guest; it never goes on
            # reading the image after validation returns.
            scanner = stack.enter_context(
                concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="goldsmith-blockscan")
            )
            scanning = scanner.submit(_scan_blocks, disk, record, secret_needles, timings)
            run_start = time.monotonic()
            log.info("Booting the template from firmware while the image is scanned")
            guest = stack.enter_context(
                boot_artifact(
                    disk,
                    boot_timeout=boot_timeout,
                    serial_log=artifact / "validate-serial.log",
                    firmware=firmware,
                    tpm=tpm,
                )
            )
            host = pinned_host(guest.client, guest.access.user)
            log.info("SSH up after %.1fs (%s)", time.monotonic() - run_start, guest.accelerator)
            # Checks see the instance as a deployer would, once cloud-init has
            # settled; what it says then is hygiene's evidence of a clean first boot.
            settled = read_status(host.run(wait_script(boot_timeout)).stdout)
            timings["boot"] = round(time.monotonic() - run_start, 3)
            expect = _expectations(
                record.build_vm, guest.instance_id, guest.access.host_key.fingerprint
            )
            results, packages = _check(host, profile, expect, tests, timings, settled)
            results += scanning.result()
            with host.sudo():
                results += check_platform(host, firmware, tpm)
            accelerator = str(guest.accelerator)
        timings["total"] = round(time.monotonic() - run_start, 3)
        after = hash_file(disk, "sha256", "sha512")
        if after != before:
            raise GuestError(f"{disk} changed during validation: the overlay leaked writes")
    run = ValidationRun(
        template_name=record.template_name,
        template_version=record.template_version,
        image_path=disk.name,
        image_sha256=before["sha256"],
        image_sha512=before["sha512"],
        profile_id=profile.id,
        profile_version=profile.version,
        profile_digest=profile.digest,
        started=started,
        finished=utc_now(),
        accelerator=accelerator,
        goldsmith_version=__version__,
        timings=timings,
        results=tuple(results),
        packages=tuple(packages),
    )
    log.info(
        "%d checks: %s (evidence %.1fs, evaluation %.3fs)",
        len(run.results),
        ", ".join(f"{n} {status}" for status, n in run.counts.items() if n),
        timings.get("facts", 0),
        timings.get("checks", 0),
    )
    run.write(folder.validation_record)
    write_junit(run, artifact / "junit.xml")
    write_html(run, artifact / "report.html")
    return run


def _scan_blocks(
    disk: Path, record: BuildRecord, secret_needles: Sequence[Needle], timings: dict[str, float]
) -> list[CheckResult]:
    # Plain log lines, not complete_step: the stage nesting belongs to the
    # main thread, which is booting the guest meanwhile.
    log.info("Scanning the image block by block")
    with _timed(timings, "blockscan"):
        results = check_disk_blocks(disk, record.to_dict(), secret_needles)
    log.info("Block scan done in %.1fs", timings["blockscan"])
    return results


def _expectations(build_vm: BuildVM, instance_id: str, pinned: str) -> Expectations:
    key = (build_vm.builder_key or "").split()
    return Expectations(
        builder_key_blob=key[1] if len(key) >= 2 else "",
        build_machine_id=build_vm.machine_id,
        build_host_keys=dict(build_vm.host_keys),
        instance_id=instance_id,
        pinned_host_key=pinned,
    )


def _check(
    host: Host,
    profile: Profile,
    expect: Expectations,
    tests: Sequence[Path],
    timings: dict[str, float],
    cloud_init_status: CloudInitStatus,
) -> tuple[list[CheckResult], list[Package]]:
    results: list[CheckResult] = []
    with host.sudo():
        with _timed(timings, "facts"), complete_step("Gathering evidence"):
            facts = gather_facts(host, profile)
        with _timed(timings, "checks"):
            results += evaluate(profile, facts)
        with _timed(timings, "hygiene"), complete_step("Checking hygiene"):
            results += check_hygiene(host, expect, cloud_init_status)
        listing = host.run(PACKAGES_QUERY)
        if listing.rc != 0:
            raise GuestError(f"listing the guest's packages failed: {listing.stderr.strip()}")
    packages = [
        Package(*line.split("\t")) for line in listing.stdout.splitlines() if line.count("\t") == 4
    ]
    if tests:
        with complete_step(f"Running user tests from {len(tests)} path(s)"):
            user_results, seconds = run_user_tests(host, tests)
            timings["user_tests"] = round(seconds, 3)
            results += user_results
    return results, packages
