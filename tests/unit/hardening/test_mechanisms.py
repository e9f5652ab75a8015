"""Each mechanism's two faces: the bash it renders and its verdict on passing
and failing evidence (hand-written facts, no host)."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hardening.errors import ParamError
from hardening.facts import Facts, Section, probe_stat
from hardening.mechanisms import MECHANISMS
from hardening.results import Status


def judge(mechanism: str, params: dict[str, Any], evidence: Facts) -> tuple[Status, str, str]:
    mech = MECHANISMS[mechanism]
    outcome = mech.evaluate(mech.parse(params), evidence)
    return outcome.status, outcome.expected, outcome.observed


def render(mechanism: str, params: dict[str, Any]) -> str:
    mech = MECHANISMS[mechanism]
    text = mech.render(mech.parse(params))
    # Every fragment must be valid bash on its own.
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    return text


def raw(sections: dict[str, tuple[int, str]]) -> Facts:
    return Facts({k: Section(rc, text) for k, (rc, text) in sections.items()})


# ---- sysctl ----

SYSCTL = {"settings": [{"key": "net.ipv4.ip_forward", "value": 0}]}


def sysctl_facts(live: str, persisted: str) -> Facts:
    return raw(
        {
            "sysctl": (0, f"kernel.sysrq = 16\nnet.ipv4.ip_forward = {live}\n"),
            "files": (0, persisted),
        }
    )


def test_sysctl_renders_persist_and_live() -> None:
    text = render("sysctl", SYSCTL)
    assert "gs_sysctl net.ipv4.ip_forward 0" in text
    two = {"settings": [*SYSCTL["settings"], {"key": "kernel.sysrq", "value": 0}]}
    # One call for the control's keys: the files are read once for all.
    assert render("sysctl", two).count("gs_sysctl ") == 1


def test_sysctl_passes_when_live_and_persisted() -> None:
    persisted = "==> /etc/sysctl.d/60-goldsmith.conf <==\nnet.ipv4.ip_forward = 0\n"
    status, expected, observed = judge("sysctl", SYSCTL, sysctl_facts("0", persisted))
    assert status is Status.passed
    assert "live and persisted" in expected
    assert "live 0; persisted 0 (/etc/sysctl.d/60-goldsmith.conf)" in observed


def test_sysctl_fails_when_only_live() -> None:
    status, _, observed = judge("sysctl", SYSCTL, sysctl_facts("0", ""))
    assert status is Status.failed
    assert "persisted: not set" in observed


def test_sysctl_later_file_wins() -> None:
    persisted = (
        "==> /etc/sysctl.d/60-goldsmith.conf <==\nnet.ipv4.ip_forward = 0\n"
        "==> /etc/sysctl.d/99-router.conf <==\nnet.ipv4.ip_forward=1\n"
    )
    status, _, observed = judge("sysctl", SYSCTL, sysctl_facts("0", persisted))
    assert status is Status.failed
    assert "99-router.conf" in observed


def test_sysctl_etc_masks_usr_lib_of_same_name() -> None:
    persisted = (
        "==> /usr/lib/sysctl.d/70-x.conf <==\nnet.ipv4.ip_forward = 1\n"
        "==> /etc/sysctl.d/70-x.conf <==\nnet.ipv4.ip_forward = 0\n"
    )
    status, _, _ = judge("sysctl", SYSCTL, sysctl_facts("0", persisted))
    assert status is Status.passed


def test_sysctl_fails_on_live_value() -> None:
    persisted = "==> /etc/sysctl.d/60-goldsmith.conf <==\nnet.ipv4.ip_forward = 0\n"
    status, _, observed = judge("sysctl", SYSCTL, sysctl_facts("1", persisted))
    assert status is Status.failed
    assert "live 1" in observed


def test_sysctl_missing_key_is_skipped_and_empty_evidence_is_error() -> None:
    params = {"settings": [{"key": "net.ipv6.conf.all.forwarding", "value": 0}]}
    status, _, _ = judge("sysctl", params, sysctl_facts("0", ""))
    assert status is Status.skipped
    status, _, _ = judge("sysctl", SYSCTL, raw({"sysctl": (0, ""), "files": (0, "")}))
    assert status is Status.error
    status, _, _ = judge("sysctl", SYSCTL, Facts({}))
    assert status is Status.error


def test_sysctl_rejects_bad_params() -> None:
    with pytest.raises(ParamError, match=r"settings\[0\]\.key"):
        MECHANISMS["sysctl"].parse({"settings": [{"key": "rm -rf /", "value": 0}]})
    with pytest.raises(ParamError, match="unknown parameter"):
        MECHANISMS["sysctl"].parse({"setting": []})


# ---- sshd ----

SSHD = {
    "options": [
        {"key": "PermitRootLogin", "value": "no"},
        {"key": "MaxAuthTries", "value": 4, "match": "max"},
        {"key": "Ciphers", "match": "excludes", "value": ["cbc$"], "write": "aes256-ctr"},
    ]
}
SSHD_T_GOOD = "port 22\npermitrootlogin no\nmaxauthtries 3\nciphers aes256-ctr,aes128-ctr\n"


def test_sshd_renders_drop_in_lines() -> None:
    text = render("sshd", SSHD)
    # One call for the control's options: the files are read once for all.
    assert text.count("gs_sshd ") == 1
    assert text.startswith("gs_sshd PermitRootLogin no")
    assert "\n  MaxAuthTries 4 " in text
    assert "\n  Ciphers aes256-ctr " in text
    # Case-insensitive key match: sshd keywords are case-insensitive.
    assert "[Pp][Ee][Rr][Mm][Ii][Tt]" in text


def test_sshd_passes_on_effective_config() -> None:
    status, expected, observed = judge("sshd", SSHD, raw({"sshd": (0, SSHD_T_GOOD)}))
    assert status is Status.passed, observed
    assert expected.startswith("sshd -T: permitrootlogin = no")


@pytest.mark.parametrize(
    "bad",
    [
        SSHD_T_GOOD.replace("permitrootlogin no", "permitrootlogin yes"),
        SSHD_T_GOOD.replace("maxauthtries 3", "maxauthtries 6"),
        SSHD_T_GOOD.replace("aes128-ctr", "aes128-cbc"),
        SSHD_T_GOOD.replace("permitrootlogin no\n", ""),
    ],
)
def test_sshd_fails(bad: str) -> None:
    status, _, _ = judge("sshd", SSHD, raw({"sshd": (0, bad)}))
    assert status is Status.failed


def test_sshd_t_failure_is_an_error() -> None:
    evidence = raw({"sshd": (255, "/etc/ssh/sshd_config line 3: Bad configuration option\n")})
    status, _, observed = judge("sshd", SSHD, evidence)
    assert status is Status.error
    assert "Bad configuration option" in observed


PQ_KEX = {
    "options": [
        {
            "key": "KexAlgorithms",
            "match": "includes_any",
            "value": ["mlkem768x25519-sha256", "sntrup761x25519-sha512@openssh.com"],
        }
    ]
}


@pytest.mark.parametrize(
    ("kex", "status"),
    [
        ("mlkem768x25519-sha256,curve25519-sha256", Status.passed),
        ("curve25519-sha256,SNTRUP761X25519-SHA512@openssh.com", Status.passed),
        ("curve25519-sha256,curve25519-sha256@libssh.org", Status.failed),
        # A name that only contains one is not it.
        ("xmlkem768x25519-sha256", Status.failed),
    ],
)
def test_sshd_includes_any_needs_one_of_the_values(kex: str, status: Status) -> None:
    result = judge("sshd", PQ_KEX, raw({"sshd": (0, f"kexalgorithms {kex}\n")}))
    assert result[0] is status, result[2]
    assert result[1] == (
        "sshd -T: kexalgorithms including one of "
        "mlkem768x25519-sha256|sntrup761x25519-sha512@openssh.com"
    )


def test_sshd_includes_any_writes_nothing_of_its_own() -> None:
    # It cannot say which list to write: another option or control writes it.
    assert render("sshd", PQ_KEX) == ""
    written = {**PQ_KEX["options"][0], "write": "mlkem768x25519-sha256,curve25519-sha256"}
    text = render("sshd", {"options": [written]})
    assert text.startswith("gs_sshd KexAlgorithms mlkem768x25519-sha256,curve25519-sha256 ")


# ---- kernel modules ----

KMOD = {"module": "usb-storage"}
BLACKLISTED = "blacklist usb_storage\ninstall usb_storage /bin/false\n"


def kmod_facts(loaded: str, config: str) -> Facts:
    return raw(
        {
            "proc-modules": (0, "ext4 1 0 - Live 0x0\n" + loaded),
            "modprobe-config": (0, config),
        }
    )


def test_kmod_renders_install_false_and_blacklist() -> None:
    text = render("kmod", KMOD)
    assert "install usb-storage /bin/false" in text
    assert "blacklist usb-storage" in text
    assert "^usb_storage " in text


def test_kmod_passes_when_disabled() -> None:
    status, _, observed = judge("kmod", KMOD, kmod_facts("", BLACKLISTED))
    assert status is Status.passed
    assert observed == "install /bin/false; blacklisted; not loaded"
    # modprobe --showconfig may keep the hyphen of a name as written.
    hyphen = "blacklist usb-storage\ninstall usb-storage /usr/bin/false\n"
    assert judge("kmod", KMOD, kmod_facts("", hyphen))[0] is Status.passed


@pytest.mark.parametrize(
    ("loaded", "config"),
    [
        ("", "blacklist usb_storage\n"),
        ("", "blacklist usb_storage\ninstall usb_storage /sbin/modprobe --ignore-install\n"),
        ("usb_storage 81920 0 - Live 0x0\n", BLACKLISTED),
        ("", "install usb_storage /bin/false\n"),
    ],
)
def test_kmod_fails(loaded: str, config: str) -> None:
    assert judge("kmod", KMOD, kmod_facts(loaded, config))[0] is Status.failed


# ---- packages ----

DPKG = "openssh-server\tii \t1:9.2p1-2\ntelnetd\trc \t0.17\nauditd\tii \t1:3.0.9-1\n"


def test_package_absent() -> None:
    assert "gs_pkg_absent telnetd rsh-server" in render(
        "package_absent", {"packages": ["telnetd", "rsh-server"]}
    )
    ok = judge("package_absent", {"packages": ["telnetd"]}, raw({"packages": (0, DPKG)}))
    assert ok[0] is Status.passed  # config files left behind are not an installed server
    bad = judge("package_absent", {"packages": ["auditd"]}, raw({"packages": (0, DPKG)}))
    assert bad[0] is Status.failed
    assert "auditd 1:3.0.9-1" in bad[2]


def test_package_present() -> None:
    assert "gs_pkg_present auditd" in render("package_present", {"packages": ["auditd"]})
    assert (
        judge("package_present", {"packages": ["auditd"]}, raw({"packages": (0, DPKG)}))[0]
        is Status.passed
    )
    bad = judge("package_present", {"packages": ["aide"]}, raw({"packages": (0, DPKG)}))
    assert bad[0] is Status.failed
    assert bad[2] == "missing: aide"
    empty = judge("package_present", {"packages": ["aide"]}, raw({"packages": (0, "")}))
    assert empty[0] is Status.error


# ---- services ----


@pytest.mark.parametrize(
    ("state", "observed", "status"),
    [
        ("masked", "masked inactive", Status.passed),
        ("masked", "not-found inactive", Status.passed),
        ("masked", "disabled inactive", Status.failed),
        ("disabled", "disabled inactive", Status.passed),
        ("disabled", "disabled active", Status.failed),
        ("enabled", "enabled active", Status.passed),
        ("enabled", "enabled inactive", Status.failed),
        ("enabled", "not-found inactive", Status.failed),
    ],
)
def test_service(state: str, observed: str, status: Status) -> None:
    params = {"unit": "cups.service", "state": state}
    assert judge("service", params, units_facts({"cups.service": observed}))[0] is status


def units_facts(states: dict[str, str]) -> Facts:
    """What systemctl list-unit-files and list-units print for these units
    ('not-found' ones are absent from both)."""
    files, loaded = [], []
    for unit, observed in states.items():
        enabled, active = observed.split()
        if enabled != "not-found":
            files.append(f"{unit} {enabled} enabled")
            loaded.append(f"{unit} loaded {active} {'running' if active == 'active' else 'dead'} x")
    text = "\n".join(files) + "\n--\n" + "\n".join(loaded) + "\n"
    return raw({"units": (0, text)})


def test_service_reads_one_batched_answer() -> None:
    evidence = units_facts({"a.service": "enabled active", "cron.service": "masked inactive"})
    params = {"unit": "cron.service", "state": "masked"}
    status, _, observed = judge("service", params, evidence)
    assert status is Status.passed
    assert observed == "cron.service masked, inactive"
    status, _, observed = judge("service", {"unit": "b.service", "state": "enabled"}, evidence)
    assert (status, observed) == (Status.failed, "b.service not-found, inactive")
    garbled = judge("service", params, raw({"units": (0, "Failed to connect to bus")}))
    assert garbled[0] is Status.error


def test_service_renders() -> None:
    assert "systemctl mask cups.service" in render(
        "service", {"unit": "cups.service", "state": "masked"}
    )
    text = render("service", {"unit": "auditd.service", "state": "enabled"})
    assert "systemctl enable auditd.service" in text
    assert "systemctl start auditd.service" in text


# ---- file permissions ----

SHADOW = {"path": "/etc/shadow", "max_mode": "0640", "group": ["shadow", "root"]}


def test_file_perm() -> None:
    text = render("file_perm", SHADOW)
    assert "gs_fix_mode" in text and "0640" in text
    ok = raw({"stat": (0, "640|root|shadow|regular file|/etc/shadow\n")})
    assert judge("file_perm", SHADOW, ok)[0] is Status.passed
    stricter = raw({"stat": (0, "0|root|root|regular file|/etc/shadow\n")})
    assert judge("file_perm", SHADOW, stricter)[0] is Status.passed
    for line in (
        "644|root|shadow|regular file|/etc/shadow",
        "640|daemon|shadow|regular file|/etc/shadow",
        "640|root|users|regular file|/etc/shadow",
    ):
        status, _, observed = judge("file_perm", SHADOW, raw({"stat": (0, line)}))
        assert status is Status.failed
        assert observed.startswith("/etc/shadow ")
    missing = judge("file_perm", SHADOW, raw({"stat": (0, "")}))
    assert missing[0] is Status.failed


def test_file_perm_probe_follows_symlinks(tmp_path: Path) -> None:
    """The stat probe, run for real: a symlink shows its target's mode, so a
    link to a 0644 keyring passes and a link to a 0666 file fails."""
    (tmp_path / "good.pgp").write_text("k")
    (tmp_path / "good.pgp").chmod(0o644)
    (tmp_path / "good.gpg").symlink_to("good.pgp")
    command = probe_stat(f"{tmp_path}/*.gpg").command.replace("{globs}", f"{tmp_path}/*.gpg")
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    me = pwd.getpwuid(os.getuid()).pw_name
    my_group = grp.getgrgid(os.getgid()).gr_name
    params = {
        "path": f"{tmp_path}/*.gpg",
        "max_mode": "0644",
        "owner": sorted({"root", me}),
        "group": sorted({"root", my_group}),
    }
    assert judge("file_perm", params, raw({"stat": (0, out.stdout)}))[0] is Status.passed
    (tmp_path / "good.pgp").chmod(0o666)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    status, _, observed = judge("file_perm", params, raw({"stat": (0, out.stdout)}))
    assert status is Status.failed and observed.startswith(f"{tmp_path}/good.gpg 0666")


def test_file_perm_glob_and_missing_ok() -> None:
    params = {"path": "/etc/ssh/ssh_host_*_key", "max_mode": "0600", "missing_ok": True}
    text = render("file_perm", params)
    assert "for f in /etc/ssh/ssh_host_*_key;" in text
    # The batched stat answers for other paths too; only the glob's count.
    other = "777|root|root|regular file|/etc/ssh/ssh_host_ed25519_key.pub\n"
    lines = "600|root|root|regular file|/etc/ssh/ssh_host_ed25519_key\n"
    evidence = raw({"stat": (0, lines + other)})
    assert judge("file_perm", params, evidence)[0] is Status.passed
    evidence = raw({"stat": (0, lines.replace("600", "644"))})
    assert judge("file_perm", params, evidence)[0] is Status.failed
    assert judge("file_perm", params, raw({"stat": (0, other)}))[0] is Status.passed


def test_file_perm_refuses_shell_in_path() -> None:
    with pytest.raises(ParamError):
        MECHANISMS["file_perm"].parse({"path": "/etc/$(reboot)", "max_mode": "0600"})


# ---- login.defs and other key/value files ----

LOGIN_DEFS = {
    "settings": [
        {"key": "PASS_MAX_DAYS", "value": 365, "match": "max"},
        {"key": "ENCRYPT_METHOD", "value": ["YESCRYPT", "SHA512"], "match": "one_of"},
    ]
}


def test_login_defs() -> None:
    text = render("login_defs", LOGIN_DEFS)
    assert "gs_set_line /etc/login.defs" in text
    assert "'PASS_MAX_DAYS 365'" in text
    assert "'ENCRYPT_METHOD YESCRYPT'" in text
    good = "# comment\nPASS_MAX_DAYS\t90\nENCRYPT_METHOD YESCRYPT\n"
    section = "files"
    evidence = raw({section: (0, f"==> /etc/login.defs <==\n{good}")})
    assert judge("login_defs", LOGIN_DEFS, evidence)[0] is Status.passed
    bad = good.replace("90", "99999")
    status, _, observed = judge(
        "login_defs", LOGIN_DEFS, raw({section: (0, f"==> /etc/login.defs <==\n{bad}")})
    )
    assert status is Status.failed
    assert "PASS_MAX_DAYS 99999" in observed
    missing = judge("login_defs", LOGIN_DEFS, raw({section: (0, "")}))
    assert missing[0] is Status.failed


def test_pwquality_reads_conf_d_after_main_file() -> None:
    params = {"settings": [{"key": "minlen", "value": 14, "match": "min"}]}
    main = "==> /etc/security/pwquality.conf <==\nminlen = 14\n"
    drop = "==> /etc/security/pwquality.conf.d/10-x.conf <==\nminlen = 8\n"
    evidence = raw({"files": (0, main + drop)})
    status, _, observed = judge("pwquality", params, evidence)
    assert status is Status.failed
    assert "10-x.conf" in observed


def test_faillock_flag() -> None:
    params = {"settings": [{"key": "even_deny_root", "match": "present"}]}
    assert render("faillock", params).endswith(" even_deny_root")
    path = "files"
    good = raw({path: (0, "==> /etc/security/faillock.conf <==\ndeny = 4\neven_deny_root\n")})
    assert judge("faillock", params, good)[0] is Status.passed
    bad = raw({path: (0, "==> /etc/security/faillock.conf <==\n# even_deny_root\n")})
    assert judge("faillock", params, bad)[0] is Status.failed


# ---- file-system scans ----

SCAN_TEXT = (
    "ww /srv/open\nwd /srv/shared\nuo /home/gone/file\n"
    "sx /usr/bin/sudo\nsx /usr/local/bin/backdoor\n"
)


@pytest.mark.parametrize(
    ("params", "status", "observed"),
    [
        ({"find": "world_writable"}, Status.failed, "2 found: /srv/open | /srv/shared"),
        ({"find": "unowned"}, Status.failed, "1 found: /home/gone/file"),
        (
            {"find": "suid_sgid", "allowed": ["/usr/bin/sudo"]},
            Status.failed,
            "1 found: /usr/local/bin/backdoor",
        ),
        (
            {"find": "suid_sgid", "allowed": ["/usr/bin/sudo", "/usr/local/bin/backdoor"]},
            Status.passed,
            "none found",
        ),
    ],
)
def test_file_scan_reads_its_own_tags(
    params: dict[str, Any], status: Status, observed: str
) -> None:
    result = judge("file_scan", params, raw({"file-scan": (0, SCAN_TEXT)}))
    assert (result[0], result[2]) == (status, observed)
    assert judge("file_scan", params, Facts({}))[0] is Status.error


def test_file_scan_walks_once_and_fixes_only_world_writable(tmp_path: Path) -> None:
    from hardening.check import probes_for
    from hardening.facts import merge_probes
    from hardening.profile import load_profile

    profile = load_profile("cis-level1-server")
    scans = [p for p in merge_probes(probes_for(profile.controls)) if "find / " in p.command]
    assert [p.name for p in scans] == ["file-scan"]
    assert render("file_scan", {"find": "unowned"}) == ""
    assert "chmod o-w" in render("file_scan", {"find": "world_writable", "fix": True})
    with pytest.raises(ParamError, match="fix"):
        MECHANISMS["file_scan"].parse({"find": "unowned", "fix": True})
    # The real find expression tags each kind (run on a scratch tree).
    (tmp_path / "open").write_text("x")
    (tmp_path / "open").chmod(0o666)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared").chmod(0o777)
    (tmp_path / "sticky").mkdir()
    (tmp_path / "sticky").chmod(0o1777)
    from hardening.mechanisms.file_scan import SCAN

    command = SCAN.command.replace("find / ", f"find {tmp_path} ", 1)
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True).stdout
    assert sorted(out.splitlines()) == [f"wd {tmp_path}/shared", f"ww {tmp_path}/open"]


def test_sysctl_live_probe_reads_only_named_keys_under_real_bash() -> None:
    from hardening.facts import parse_sections, render_gather_script
    from hardening.mechanisms.sysctl import probe_live

    probes = [probe_live(("kernel.ostype",)), probe_live(("kernel.ostype", "net.no.such_key"))]
    script, mark = render_gather_script(probes)
    assert "sysctl " not in script  # builtins only, no process
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    text = parse_sections(done.stdout, mark).text("sysctl")
    assert text.splitlines() == ["kernel.ostype = Linux", "# net.no.such_key absent"]
    params = {"settings": [{"key": "net.no.such_key", "value": 0}]}
    assert judge("sysctl", params, raw({"sysctl": (0, text), "files": (0, "")}))[0] is (
        Status.skipped
    )


def script_facts(params: dict[str, Any], rc: int, text: str) -> Facts:
    spec = MECHANISMS["script"].parse(params)
    (probe,) = MECHANISMS["script"].probes(spec)
    return raw({probe.name: (rc, text)})


@pytest.mark.parametrize(
    ("rc", "text", "status"),
    [
        (0, "", Status.passed),
        (1, "pending: openssl", Status.failed),
        (3, "no package lists in the image", Status.skipped),
    ],
)
def test_script_not_applicable_exit_skips_with_the_checks_reason(
    rc: int, text: str, status: Status
) -> None:
    params = {"check": "true", "expected": "x", "pass_if": "rc0", "not_applicable_exit": 3}
    got, _expected, _observed = judge("script", params, script_facts(params, rc, text))
    assert got is status
    spec = MECHANISMS["script"].parse(params)
    outcome = MECHANISMS["script"].evaluate(spec, script_facts(params, rc, text))
    if status is Status.skipped:
        assert outcome.reason == "not applicable: no package lists in the image"
    else:
        assert outcome.reason == ""


def test_script_without_not_applicable_exit_fails_on_any_other_status() -> None:
    params = {"check": "true", "expected": "x", "pass_if": "rc0"}
    got, _expected, _observed = judge("script", params, script_facts(params, 3, "why"))
    assert got is Status.failed


@pytest.mark.parametrize("bad", [0, 1, 126, 255, "3", True, 2.5])
def test_script_not_applicable_exit_must_not_be_a_verdict(bad: Any) -> None:
    with pytest.raises(ParamError, match="not_applicable_exit"):
        MECHANISMS["script"].parse({"check": "true", "expected": "x", "not_applicable_exit": bad})


# ---- audit rules ----

CONTINUE = {"file": "01-continue-loading", "continue_loading": True}
RULE = "-w /etc/hosts -p wa -k system-locale"


def audit_files(files: dict[str, str]) -> Facts:
    text = "".join(f"==> {path} <==\n{body}\n" for path, body in files.items())
    return raw({"files": (0, text)})


def test_audit_continue_loading_writes_c_before_its_rules() -> None:
    text = render("audit", {**CONTINUE, "rules": [RULE]})
    assert text.splitlines()[1:4] == ["# goldsmith: 01-continue-loading", "-c", RULE]
    assert "-c" in render("audit", CONTINUE).splitlines()
    with pytest.raises(ParamError, match="continue_loading"):
        MECHANISMS["audit"].parse({"file": "01-x"})


# augenrules puts -D, -b and -f first and -e last, and keeps every other line,
# -c included, in the order of the rules.d files.
COMPILED = "-D\n-b 8192\n-f 1\n-c\n" + RULE + "\n--backlog_wait_time 60000\n-e 2\n"


@pytest.mark.parametrize(
    ("files", "status", "observed"),
    [
        (
            {
                "/etc/audit/rules.d/01-continue-loading.rules": "# goldsmith\n-c\n",
                "/etc/audit/rules.d/50-hosts.rules": RULE + "\n",
                "/etc/audit/audit.rules": COMPILED,
            },
            Status.passed,
            "-c before the rules: /etc/audit/rules.d yes, /etc/audit/audit.rules yes",
        ),
        (  # ls -v's order: 9- before 10-, though "10" < "9" as text
            {
                "/etc/audit/rules.d/9-c.rules": "-c\n",
                "/etc/audit/rules.d/10-hosts.rules": RULE + "\n",
                "/etc/audit/audit.rules": COMPILED,
            },
            Status.passed,
            "/etc/audit/rules.d yes",
        ),
        (  # after a rule, -c cannot save it
            {
                "/etc/audit/rules.d/50-hosts.rules": RULE + "\n",
                "/etc/audit/rules.d/60-c.rules": "-c\n",
                "/etc/audit/audit.rules": COMPILED,
            },
            Status.failed,
            "/etc/audit/rules.d no",
        ),
        (  # rules.d has it, augenrules has not compiled it yet
            {
                "/etc/audit/rules.d/01-continue-loading.rules": "-c\n",
                "/etc/audit/audit.rules": COMPILED.replace("-c\n", ""),
            },
            Status.failed,
            "/etc/audit/audit.rules no",
        ),
        (
            {"/etc/audit/rules.d/01-continue-loading.rules": "-c\n"},
            Status.failed,
            "/etc/audit/audit.rules missing",
        ),
        (  # a comment is not an option
            {
                "/etc/audit/rules.d/01-continue-loading.rules": "# -c\n",
                "/etc/audit/audit.rules": "# -c\n" + RULE + "\n",
            },
            Status.failed,
            "/etc/audit/rules.d no, /etc/audit/audit.rules no",
        ),
    ],
)
def test_audit_continue_loading_is_judged_in_rules_d_and_compiled(
    files: dict[str, str], status: Status, observed: str
) -> None:
    result = judge("audit", CONTINUE, audit_files(files))
    assert result[0] is status, result[2]
    assert observed in result[2]
