from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from builder.cloudinit import CloudInitStatus
from hardening.results import CheckResult, Status
from validate.hygiene import (
    ACCOUNT_BACKUPS,
    BUILDER_USER,
    CHECKS,
    KEY_SEARCH_ROOTS,
    MARK,
    Expectations,
    check_hygiene,
    evaluate_hygiene,
    hygiene_script,
    parse_sections,
)

BUILDER_BLOB = "AAAAC3NzaC1lZDI1NTE5AAAAIBuilderOneRunKey000000000000000000000000"
VALIDATOR_BLOB = "AAAAC3NzaC1lZDI1NTE5AAAAIValidatorOneRunKey00000000000000000000"
BUILD_MACHINE_ID = "0f" * 16
NEW_MACHINE_ID = "a1" * 16
BUILD_HOST_KEY = "SHA256:buildVMhostKeyFingerprint0000000000000000000"
PINNED = "SHA256:pinnedValidationHostKey000000000000000000"
INSTANCE = "goldsmith-5e1f2a3b4c5d"

EXPECT = Expectations(
    builder_key_blob=BUILDER_BLOB,
    build_machine_id=BUILD_MACHINE_ID,
    build_host_keys={"ed25519": BUILD_HOST_KEY},
    instance_id=INSTANCE,
    pinned_host_key=PINNED,
)

# What a cleanly sealed template shows in its first (validation) boot.
CLEAN = {
    "authorized_keys": (
        f"/home/gsvalidate/.ssh/authorized_keys: ssh-ed25519 {VALIDATOR_BLOB} "
        "goldsmith-validate-5e1f2a3b4c5d"
    ),
    "builder_account": "",
    "machine_id": NEW_MACHINE_ID,
    "host_keys": f"256 {PINNED} goldsmith-host-5e1f2a3b4c5d (ED25519)",
    "cloud_init": (
        "status: done\n"
        "extended_status: done\n"
        "boot_status_code: enabled-by-generator\n"
        "last_update: Thu, 02 May 2024 10:00:14 +0000\n"
        "detail:\n"
        "DataSourceNoCloud [seed=/dev/vdb][dsmode=net]\n"
        f"instance: {INSTANCE}\n"
        f"instances: {INSTANCE}"
    ),
    "histories": "",
    "seed": "",
    "private_keys": "",
    "boots": "1",
    "account_backups": "",
    "login_records": (
        "[2] [00000] [~~  ] [reboot  ] [~           ] [6.1.0-18-cloud-amd64] "
        "[0.0.0.0        ] [2024-05-02T10:00:01,123456+00:00]\n"
        "[1] [00053] [~~  ] [runlevel] [~           ] [6.1.0-18-cloud-amd64] "
        "[0.0.0.0        ] [2024-05-02T10:00:09,000001+00:00]\n"
        "[7] [00612] [ts/0] [gsvalidate] [pts/0       ] [10.0.2.2            ] "
        "[10.0.2.2       ] [2024-05-02T10:00:15,000002+00:00]"
    ),
    "apt_proxy": "",
    "audit_log": "btime 1714644001\n/var/log/audit/audit.log 1714644003",
}
# A wtmp the build left behind: its shutdown and tty records before this boot's.
BUILD_WTMP = (
    "[8] [00430] [tty1] [        ] [tty1        ] [                    ] "
    "[0.0.0.0        ] [2024-05-01T09:43:15,293563+00:00]\n"
    "[1] [00000] [~~  ] [shutdown] [~           ] [6.1.0-18-cloud-amd64] "
    "[0.0.0.0        ] [2024-05-01T09:43:18,336487+00:00]\n"
)


def by_id(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.id: r for r in results}


def section_line(name: str) -> str:
    marker = f"echo {shlex.quote(MARK + name)}; "
    (line,) = [line for line in hygiene_script().splitlines() if line.startswith(marker)]
    return line


def run_sh(script: str, *, path: Path | None = None) -> str:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = f"{path}:{env['PATH']}"
    proc = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env=env, timeout=10, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def fake_program(folder: Path, name: str, output: str) -> None:
    folder.mkdir(exist_ok=True)
    program = folder / name
    program.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\n")
    program.chmod(0o755)


# --- evaluation -----------------------------------------------------------------


def test_a_clean_template_passes_every_check() -> None:
    results = evaluate_hygiene(dict(CLEAN), EXPECT)

    assert [r.id for r in results] == [f"HYG-{i:02d}" for i in range(1, 14)]
    assert {r.status for r in results} == {Status.passed}
    assert {r.area for r in results} == {"hygiene"}
    for result, (_, title, severity, _) in zip(results, CHECKS, strict=True):
        assert (result.title, result.severity) == (title, severity)
        assert result.expected


def test_clean_results_say_what_was_seen() -> None:
    results = by_id(evaluate_hygiene(dict(CLEAN), EXPECT))
    assert results["HYG-01"].observed == "absent"
    assert results["HYG-03"].observed == NEW_MACHINE_ID
    assert results["HYG-04"].observed == f"ed25519 {PINNED}"
    assert results["HYG-05"].observed == (
        f"status done, instance {INSTANCE}, instances on disk: {INSTANCE}"
    )
    assert results["HYG-09"].observed == "1 boots"
    assert results["HYG-10"].observed == "none"
    assert results["HYG-11"].observed == "3 records, 1 boot record(s)"


FAILURES = [
    pytest.param(
        "HYG-01",
        {
            "authorized_keys": CLEAN["authorized_keys"]
            + f"\n/root/.ssh/authorized_keys: ssh-ed25519 {BUILDER_BLOB} goldsmith-build-x"
        },
        "/root/.ssh/authorized_keys",
        id="builder-key",
    ),
    pytest.param(
        "HYG-02",
        {"builder_account": f"{BUILDER_USER}:x:1000:1000::/home/{BUILDER_USER}:/bin/bash"},
        f"{BUILDER_USER}:x:1000:1000",
        id="builder-account",
    ),
    pytest.param(
        "HYG-02",
        {"builder_account": "/etc/sudoers.d/90-cloud-init-users"},
        "/etc/sudoers.d/90-cloud-init-users",
        id="builder-sudo-rule",
    ),
    pytest.param("HYG-03", {"machine_id": BUILD_MACHINE_ID}, BUILD_MACHINE_ID, id="same-id"),
    pytest.param("HYG-03", {"machine_id": ""}, "empty", id="empty-machine-id"),
    pytest.param("HYG-03", {"machine_id": "uninitialized"}, "uninitialized", id="bad-id"),
    pytest.param(
        "HYG-04",
        {
            "host_keys": CLEAN["host_keys"]
            + f"\n3072 {BUILD_HOST_KEY} root@debian-12-baseline (RSA)"
        },
        f"reused from the build VM: {BUILD_HOST_KEY}",
        id="reused-host-key",
    ),
    pytest.param(
        "HYG-04",
        {"host_keys": "256 SHA256:someOtherKey0000000000000000000000000000000 x (ED25519)"},
        "ed25519 SHA256:someOtherKey",
        id="not-the-pinned-key",
    ),
    pytest.param("HYG-04", {"host_keys": ""}, "none", id="no-host-keys"),
    pytest.param(
        "HYG-05",
        {"cloud_init": CLEAN["cloud_init"].replace("status: done", "status: error", 1)},
        "status error",
        id="cloud-init-error",
    ),
    pytest.param(
        "HYG-05",
        {
            "cloud_init": CLEAN["cloud_init"].replace(
                f"instances: {INSTANCE}", f"instances: goldsmith-0ldbu1ld0000 {INSTANCE}"
            )
        },
        f"instances on disk: goldsmith-0ldbu1ld0000 {INSTANCE}",
        id="earlier-instance",
    ),
    pytest.param(
        "HYG-05",
        {
            "cloud_init": CLEAN["cloud_init"].replace(
                f"instance: {INSTANCE}", "instance: goldsmith-0ldbu1ld0000"
            )
        },
        "instance goldsmith-0ldbu1ld0000",
        id="other-instance-id",
    ),
    pytest.param(
        "HYG-06",
        {"histories": "/root/.bash_history\n/home/admin/.lesshst"},
        "/root/.bash_history\n/home/admin/.lesshst",
        id="histories",
    ),
    pytest.param(
        "HYG-07",
        {"seed": "user-data\nmeta-data\n/var/lib/goldsmith/seed.iso"},
        "/var/lib/goldsmith/seed.iso",
        id="seed",
    ),
    pytest.param(
        "HYG-08",
        {"private_keys": "/etc/ssl/private/site.key"},
        "/etc/ssl/private/site.key",
        id="private-key",
    ),
    pytest.param("HYG-09", {"boots": "3"}, "3 boots", id="build-boots"),
    pytest.param("HYG-09", {"boots": ""}, "? boots", id="no-boot-count"),
    pytest.param(
        "HYG-10",
        {"account_backups": "/etc/passwd-\n/etc/shadow-"},
        "/etc/passwd-\n/etc/shadow-",
        id="account-backups",
    ),
    pytest.param(
        "HYG-11",
        {"login_records": BUILD_WTMP + CLEAN["login_records"]},
        "5 records, 1 boot record(s), the first of type 8 (records older than this boot)",
        id="build-wtmp",
    ),
    pytest.param(
        "HYG-11",
        {"login_records": CLEAN["login_records"] + "\n" + CLEAN["login_records"]},
        "6 records, 2 boot record(s)",
        id="two-boots",
    ),
    pytest.param(
        "HYG-11",
        {"login_records": CLEAN["login_records"].replace("[gsvalidate]", f"[{BUILDER_USER}  ]")},
        f"records of {BUILDER_USER}",
        id="builder-login",
    ),
]


@pytest.mark.parametrize(("check_id", "change", "observed"), FAILURES)
def test_each_check_fails_on_its_own_evidence(
    check_id: str, change: dict[str, str], observed: str
) -> None:
    results = by_id(evaluate_hygiene({**CLEAN, **change}, EXPECT))

    failed = results.pop(check_id)
    assert failed.status is Status.failed
    assert observed in failed.observed
    # One leftover fails one check: the others still pass.
    assert {r.status for r in results.values()} == {Status.passed}


def test_other_keys_in_authorized_keys_are_fine() -> None:
    evidence = {
        **CLEAN,
        "authorized_keys": CLEAN["authorized_keys"]
        + "\n/root/.ssh/authorized_keys: ssh-ed25519 AAAAoperatorKey ops@site",
    }
    assert by_id(evaluate_hygiene(evidence, EXPECT))["HYG-01"].status is Status.passed


def test_missing_evidence_is_an_error_not_a_pass() -> None:
    evidence = dict(CLEAN)
    del evidence["boots"]
    del evidence["authorized_keys"]

    results = by_id(evaluate_hygiene(evidence, EXPECT))

    for check_id in ("HYG-01", "HYG-09"):
        assert results[check_id].status is Status.error
        assert results[check_id].expected == "readable evidence"
        assert results[check_id].observed.startswith("unreadable: ")
    assert results["HYG-05"].status is Status.passed


def test_expectations_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EXPECT.instance_id = "other"  # type: ignore[misc]


# --- the script and its sections ------------------------------------------------------


def test_the_script_is_valid_bash_and_posix_sh() -> None:
    script = hygiene_script()
    for shell in ("bash", "sh"):
        proc = subprocess.run([shell, "-n"], input=script, capture_output=True, text=True)
        assert proc.returncode == 0, (shell, proc.stderr)


def test_the_script_has_one_section_per_check_input() -> None:
    lines = hygiene_script().splitlines()
    names = [shlex.split(line.partition("; ")[0])[1].removeprefix(MARK) for line in lines]
    assert names == list(CLEAN)
    # Each section's errors land in its own evidence, not lost on stderr.
    assert all(line.endswith(") 2>&1") for line in lines)


def test_parse_sections_reads_what_the_script_markers_print() -> None:
    # The script's own markers, each followed by canned evidence instead of its command.
    lines = []
    for line in hygiene_script().splitlines():
        marker = line.partition("; ")[0]
        name = shlex.split(marker)[1].removeprefix(MARK)
        lines.append(f"{marker}; printf '%s\\n' {shlex.quote(CLEAN[name])}")
    output = run_sh("\n".join(lines))

    assert parse_sections(output) == CLEAN


def test_parse_sections_ignores_output_before_the_first_marker() -> None:
    output = f"sudo: unable to resolve host\n{MARK}machine_id\n  {NEW_MACHINE_ID}  \n\n"
    assert parse_sections(output) == {"machine_id": NEW_MACHINE_ID}


def test_check_hygiene_runs_the_script_once_and_evaluates_it() -> None:
    canned = "".join(f"{MARK}{name}\n{text}\n" for name, text in CLEAN.items())

    @dataclasses.dataclass
    class Result:
        rc: int
        stdout: str
        stderr: str = ""

    class Host:
        def __init__(self) -> None:
            self.commands: list[tuple[str, tuple[str, ...]]] = []

        def run(self, command: str, *args: str) -> Result:
            self.commands.append((command, args))
            return Result(0, canned)

        def sudo(self, user: str | None = None) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()

    host = Host()
    _, _, instances = CLEAN["cloud_init"].partition("\ninstance: ")
    canned = canned.replace(CLEAN["cloud_init"], "instance: " + instances)
    done = CloudInitStatus("done", "DataSourceNoCloud [seed=/dev/vdb][dsmode=net]")
    results = check_hygiene(host, EXPECT, done)

    assert host.commands == [(hygiene_script(), ())]
    assert len(results) == 13 and {r.status for r in results} == {Status.passed}
    # The status given is the one judged: an error there fails the check.
    error = CloudInitStatus("error", errors=("init: module ssh failed",))
    failed = check_hygiene(host, EXPECT, error)
    assert [r.id for r in failed if r.status is Status.failed] == ["HYG-05"]
    assert "status error" in next(r.observed for r in failed if r.id == "HYG-05")


# --- sections run for real, with paths moved under tmp_path -----------------------------


def test_the_authorized_keys_section_names_the_file_holding_the_builder_key(
    tmp_path: Path,
) -> None:
    line = section_line("authorized_keys")
    for folder in ("root/.ssh", "home/admin/.ssh", "etc/ssh"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "root/.ssh/authorized_keys").write_text(
        f"ssh-ed25519 {BUILDER_BLOB} goldsmith-build-1\n"
    )
    (tmp_path / "home/admin/.ssh/authorized_keys2").write_text("ssh-ed25519 AAAAother ops\n")
    moved = (
        line.replace("/root/", f"{tmp_path}/root/")
        .replace("/home/", f"{tmp_path}/home/")
        .replace("/etc/ssh/", f"{tmp_path}/etc/ssh/")
    )

    evidence = {**CLEAN, **parse_sections(run_sh(moved))}
    result = by_id(evaluate_hygiene(evidence, EXPECT))["HYG-01"]

    assert result.status is Status.failed
    assert result.observed == f"{tmp_path}/root/.ssh/authorized_keys"
    assert (
        f"{tmp_path}/home/admin/.ssh/authorized_keys2: ssh-ed25519 AAAAother ops"
        in (evidence["authorized_keys"])
    )


def test_the_histories_section_skips_empty_files(tmp_path: Path) -> None:
    line = section_line("histories")
    (tmp_path / "root").mkdir()
    (tmp_path / "home/admin").mkdir(parents=True)
    (tmp_path / "root/.bash_history").write_text("")
    (tmp_path / "home/admin/.python_history").write_text("import secrets\n")
    moved = line.replace("/root ", f"{tmp_path}/root ").replace("/home ", f"{tmp_path}/home ")

    evidence = parse_sections(run_sh(moved))

    assert evidence == {"histories": f"{tmp_path}/home/admin/.python_history"}


def key_roots_under(tmp_path: Path) -> str:
    line = section_line("private_keys")
    roots = " ".join(KEY_SEARCH_ROOTS)
    assert roots in line
    return line.replace(roots, " ".join(f"{tmp_path}{root}" for root in KEY_SEARCH_ROOTS))


def put(path: Path, text: str, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_private_keys_section_finds_keys_others_can_read(tmp_path: Path) -> None:
    pem = "-----BEGIN {}PRIVATE KEY-----\nMIIE\n-----END {}PRIVATE KEY-----\n"
    leaked = [
        put(tmp_path / "etc/ssl/private/site.key", pem.format("RSA ", "RSA "), 0o644),
        put(tmp_path / "opt/app/key.pem", pem.format("", ""), 0o640),
        put(tmp_path / "home/admin/.ssh/id_ed25519", pem.format("OPENSSH ", "OPENSSH "), 0o604),
    ]
    put(tmp_path / "etc/ssh/ssh_host_ed25519_key", pem.format("OPENSSH ", "OPENSSH "), 0o600)
    put(tmp_path / "etc/ssl/certs/ca.pem", "-----BEGIN CERTIFICATE-----\n", 0o644)
    put(tmp_path / "srv/notes.txt", "how to make a PRIVATE KEY\n", 0o644)

    evidence = {**CLEAN, **parse_sections(run_sh(key_roots_under(tmp_path)))}
    result = by_id(evaluate_hygiene(evidence, EXPECT))["HYG-08"]

    assert result.status is Status.failed
    assert sorted(result.observed.splitlines()) == sorted(str(p) for p in leaked)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_key_owned_by_a_non_root_user_is_found(tmp_path: Path) -> None:
    key = put(
        tmp_path / "home/deploy/.ssh/id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n",
        0o600,
    )
    os.chown(key, 1000, 1000)

    evidence = {**CLEAN, **parse_sections(run_sh(key_roots_under(tmp_path)))}

    assert by_id(evaluate_hygiene(evidence, EXPECT))["HYG-08"].status is Status.failed


LIST_BOOTS_252 = (
    " 0 6f1b2c3d4e5f60718293a4b5c6d7e8f9 Thu 2024-05-02 10:00:01 UTC—Thu 2024-05-02 10:05:00 UTC"
)
LIST_BOOTS_254 = (
    "IDX BOOT ID                          FIRST ENTRY                 LAST ENTRY\n"
    "  0 6f1b2c3d4e5f60718293a4b5c6d7e8f9 Thu 2024-05-02 10:00:01 UTC Thu 2024-05-02 10:05:00 UTC"
)


def test_one_boot_in_the_journal_passes(tmp_path: Path) -> None:
    fake_program(tmp_path / "bin", "journalctl", LIST_BOOTS_252)
    evidence = {**CLEAN, **parse_sections(run_sh(section_line("boots"), path=tmp_path / "bin"))}
    assert evidence["boots"] == "1"
    assert by_id(evaluate_hygiene(evidence, EXPECT))["HYG-09"].status is Status.passed


def test_one_boot_in_a_newer_journal_passes(tmp_path: Path) -> None:
    # systemd 254 and later print a header line before the boots.
    fake_program(tmp_path / "bin", "journalctl", LIST_BOOTS_254)
    evidence = {**CLEAN, **parse_sections(run_sh(section_line("boots"), path=tmp_path / "bin"))}
    assert evidence["boots"] == "1"
    assert by_id(evaluate_hygiene(evidence, EXPECT))["HYG-09"].status is Status.passed


def test_no_wtmp_at_all_is_clean_and_an_unreadable_one_is_an_error() -> None:
    absent = by_id(evaluate_hygiene({**CLEAN, "login_records": "absent"}, EXPECT))["HYG-11"]
    assert (absent.status, absent.observed) == (Status.passed, "no wtmp")
    for text in ("no-utmpdump", "", "garbage"):
        result = by_id(evaluate_hygiene({**CLEAN, "login_records": text}, EXPECT))["HYG-11"]
        assert result.status is Status.error, text


def test_the_account_backups_section_names_files_that_mention_the_builder(
    tmp_path: Path,
) -> None:
    line = section_line("account_backups")
    assert all(path in line for path in ACCOUNT_BACKUPS)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd-").write_text(f"root:x:0:0::/root:/bin/bash\n{BUILDER_USER}:x:1000\n")
    (tmp_path / "etc/group-").write_text(f"sudo:x:27:{BUILDER_USER}\n")
    (tmp_path / "etc/shadow-").write_text(f"{BUILDER_USER}x:!:1\n")  # not the word itself
    moved = line.replace("/etc/", f"{tmp_path}/etc/").replace("/var/", f"{tmp_path}/var/")

    evidence = {**CLEAN, **parse_sections(run_sh(moved))}
    result = by_id(evaluate_hygiene(evidence, EXPECT))["HYG-10"]

    assert result.status is Status.failed
    assert result.observed.splitlines() == [f"{tmp_path}/etc/passwd-", f"{tmp_path}/etc/group-"]


def test_the_login_records_section_reads_wtmp_with_utmpdump(tmp_path: Path) -> None:
    line = section_line("login_records")
    moved = line.replace("/var/log/wtmp", f"{tmp_path}/wtmp")
    assert parse_sections(run_sh(moved)) == {"login_records": "absent"}

    (tmp_path / "wtmp").write_bytes(b"")
    fake_program(tmp_path / "bin", "utmpdump", CLEAN["login_records"])
    evidence = {**CLEAN, **parse_sections(run_sh(moved, path=tmp_path / "bin"))}
    assert by_id(evaluate_hygiene(evidence, EXPECT))["HYG-11"].status is Status.passed


def test_a_proxy_file_left_behind_fails() -> None:
    results = by_id(
        evaluate_hygiene({**CLEAN, "apt_proxy": "/etc/apt/apt.conf.d/00goldsmith-proxy"}, EXPECT)
    )
    assert results["HYG-12"].status is Status.failed
    assert "00goldsmith-proxy" in results["HYG-12"].observed
    assert by_id(evaluate_hygiene(CLEAN, EXPECT))["HYG-12"].status is Status.passed


def test_an_audit_log_from_the_build_fails() -> None:
    # The seal's own records, written after the logs were emptied, a day before.
    evidence = {
        **CLEAN,
        "audit_log": "btime 1714644001\n/var/log/audit/audit.log 1714557600\n"
        "/var/log/audit/audit.log.1 empty",
    }
    result = by_id(evaluate_hygiene(evidence, EXPECT))["HYG-13"]
    assert result.status is Status.failed
    assert result.observed == "/var/log/audit/audit.log starts 86401 s before this boot"
    clean = by_id(evaluate_hygiene(CLEAN, EXPECT))["HYG-13"]
    assert clean.status is Status.passed
    assert clean.observed == "1 audit log(s), none older than this boot"
    no_audit = by_id(evaluate_hygiene({**CLEAN, "audit_log": "btime 5"}, EXPECT))["HYG-13"]
    assert (no_audit.status, no_audit.observed) == (Status.passed, "no audit log")


def test_the_audit_section_reads_each_log_s_first_record(tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "audit.log").write_text(
        "type=DAEMON_START msg=audit(1714644003.120:5470): op=start ver=3.0.9\n"
        "type=SERVICE_START msg=audit(1714644004.000:5471): pid=1\n"
    )
    (audit / "audit.log.1").write_text("")
    line = section_line("audit_log").replace("/var/log/audit/", f"{audit}/")
    lines = parse_sections(run_sh(line))["audit_log"].splitlines()
    assert lines[0].startswith("btime ") and int(lines[0].split()[1]) > 0
    assert lines[1:] == [f"{audit}/audit.log 1714644003", f"{audit}/audit.log.1 empty"]
