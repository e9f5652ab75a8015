"""Level 2 controls against what a booted Debian guest really shows: fixes found
by proving cis-level2-server in a guest (tests/bench/level2.py)."""

from __future__ import annotations

from typing import Any

from hardening.apply import render_apply_script
from hardening.catalog import load_catalog
from hardening.facts import FILES, Facts, Section
from hardening.mechanisms import MECHANISMS
from hardening.mechanisms.audit import LIVE_RULES, augenrules_order, normalise
from hardening.mechanisms.base import Outcome
from hardening.profile import load_profile
from hardening.results import Status


def test_a_comparison_reads_the_same_in_either_order() -> None:
    # The catalog writes CIS's "-C euid!=uid"; auditctl -l prints the kernel's order.
    rule = load_catalog()["audit-rules-user-emulation"].params["rules"][0]
    listed = "-a always,exit -F arch=b64 -S execve -C uid!=euid -F auid!=-1 -F key=user_emulation"
    wanted, live = normalise(rule), normalise(listed)
    assert wanted is not None and live is not None
    assert wanted.satisfied_by(live)
    # An ordered comparison is not symmetric and stays as written.
    ordered = normalise("-a always,exit -S execve -C uid>euid -k x")
    flipped = normalise("-a always,exit -S execve -C euid>uid -k x")
    assert ordered is not None and flipped is not None
    assert not ordered.satisfied_by(flipped)


def judge_audit(ident: str, listed: str, disk: dict[str, str] | None = None) -> Outcome:
    """A catalog audit control's verdict on what ``auditctl -l`` printed, with
    the control's own rules file on disk unless ``disk`` says otherwise."""
    control = load_catalog()[ident]
    mechanism = MECHANISMS["audit"]
    spec: Any = mechanism.parse(control.params)
    if disk is None:
        disk = {f"/etc/audit/rules.d/{spec.file}.rules": mechanism_file(control.params)}
    files = "".join(f"==> {path} <==\n{text}\n" for path, text in disk.items())
    facts = Facts({LIVE_RULES.name: Section(0, listed), FILES: Section(0, files)})
    return mechanism.evaluate(spec, facts)


def mechanism_file(params: Any) -> str:
    """The rules file the apply script writes for ``params`` (its here-document)."""
    rendered = MECHANISMS["audit"].render(MECHANISMS["audit"].parse(params))
    body = rendered.split("\n", 1)[1]
    return body.rsplit("\n", 1)[0] + "\n"


# What auditctl -l prints for audit-rules-network: watches without their
# trailing slash (auditctl trims it before the kernel sees the path), keys as
# -k, syscall rules with -F key=.
NETWORK_LISTED = """\
-a always,exit -F arch=b64 -S sethostname,setdomainname -F key=system-locale
-a always,exit -F arch=b32 -S sethostname,setdomainname -F key=system-locale
-w /etc/issue -p wa -k system-locale
-w /etc/issue.net -p wa -k system-locale
-w /etc/hosts -p wa -k system-locale
-w /etc/hostname -p wa -k system-locale
-w /etc/networks -p wa -k system-locale
-w /etc/network -p wa -k system-locale
-w /etc/systemd/network -p wa -k system-locale
-w /etc/NetworkManager -p wa -k system-locale
"""


def test_network_manager_is_watched_as_auditctl_lists_a_missing_directory() -> None:
    control = load_catalog()["audit-rules-network"]
    assert "-w /etc/NetworkManager/ -p wa -k system-locale" in control.params["rules"]
    ref = control.references.cis_on("debian13")
    assert ref is not None and "6.2.3.9" in ref.items
    # A watch on a path that does not exist yet is a watch on its name in
    # /etc: the kernel keeps it, auditctl -l prints it without the slash.
    outcome = judge_audit("audit-rules-network", NETWORK_LISTED)
    assert outcome.status is Status.passed, outcome.observed
    missing = NETWORK_LISTED.replace("-w /etc/NetworkManager -p wa -k system-locale\n", "")
    outcome = judge_audit("audit-rules-network", missing)
    assert outcome.status is Status.failed
    assert "first missing: -w /etc/NetworkManager/ -p wa -k system-locale" in outcome.observed
    # Another permission or key is another rule.
    other = NETWORK_LISTED.replace("NetworkManager -p wa", "NetworkManager -p w")
    assert judge_audit("audit-rules-network", other).status is Status.failed


def test_module_rules_match_auditctl_listing_system_calls_in_table_order() -> None:
    control = load_catalog()["audit-rules-modules"]
    ref = control.references.cis_on("debian13")
    assert ref is not None and "6.2.3.34" in ref.items
    # auditctl -l names a rule's system calls in number order (create_module
    # 174, init_module 175, delete_module 176, query_module 178, finit_module
    # 313 on x86_64) and audit 3.0.9 prints unset as -1.
    listed = (
        "-a always,exit -F arch=b64 -S create_module,init_module,delete_module,"
        "query_module,finit_module -F auid>=1000 -F auid!=-1 -F key=kernel_modules\n"
        "-a always,exit -S all -F path=/usr/bin/kmod -F perm=x -F auid>=1000 -F auid!=-1"
        " -F key=kernel_modules\n"
    )
    outcome = judge_audit("audit-rules-modules", listed)
    assert outcome.status is Status.passed, outcome.observed
    # The rule as it was before query_module: loaded, but not what 6.2.3.34 asks.
    older = listed.replace("create_module,", "").replace("query_module,", "")
    outcome = judge_audit("audit-rules-modules", older)
    assert outcome.status is Status.failed
    assert "first missing: -a always,exit -F arch=b64 -S init_module" in outcome.observed


# What Debian 13's auditctl (audit 4.0.2) lists for audit-rules-perm-mod and
# audit-rules-perm-mod-fchmodat2 together: two files, one call in each rule.
PERM_MOD_LISTED_13 = """\
-a always,exit -F arch=b64 -S chmod,fchmod,fchmodat -F auid>=1000 -F auid!=unset -F key=perm_mod
-a always,exit -F arch=b64 -S chown,fchown,lchown,fchownat \
-F auid>=1000 -F auid!=unset -F key=perm_mod
-a always,exit -F arch=b64 -S setxattr,lsetxattr,fsetxattr,removexattr,lremovexattr,fremovexattr \
-F auid>=1000 -F auid!=unset -F key=perm_mod
-a always,exit -F arch=b32 -S chmod,fchmod,fchmodat -F auid>=1000 -F auid!=unset -F key=perm_mod
-a always,exit -F arch=b32 -S chown,fchown,lchown,fchownat \
-F auid>=1000 -F auid!=unset -F key=perm_mod
-a always,exit -F arch=b32 -S setxattr,lsetxattr,fsetxattr,removexattr,lremovexattr,fremovexattr \
-F auid>=1000 -F auid!=unset -F key=perm_mod
-a always,exit -F arch=b64 -S fchmodat2 -F auid>=1000 -F auid!=unset -F key=perm_mod
-a always,exit -F arch=b32 -S fchmodat2 -F auid>=1000 -F auid!=unset -F key=perm_mod
"""


def test_fchmodat2_is_audited_on_debian13_only() -> None:
    catalog = load_catalog()
    control = catalog["audit-rules-perm-mod-fchmodat2"]
    assert control.releases == ("13",)
    # Debian 12's rules are unchanged: fchmodat2 is in no rule of the older control.
    assert not any("fchmodat2" in rule for rule in catalog["audit-rules-perm-mod"].params["rules"])
    hardened = {sc.id: sc for sc in load_profile("hardened-server").controls}
    assert dict(hardened["audit-rules-perm-mod-fchmodat2"].not_on) == {
        "12": control.releases_reason
    }
    assert not hardened["audit-rules-perm-mod"].not_on
    script = render_apply_script(load_profile("hardened-server"))
    step = script[script.index("gs_begin audit-rules-perm-mod-fchmodat2") :]
    assert step.index("gs_release_in 12") < step.index("50-perm-mod-fchmodat2.rules")


def test_both_chmod_controls_pass_on_what_debian13_lists() -> None:
    for ident in ("audit-rules-perm-mod", "audit-rules-perm-mod-fchmodat2"):
        outcome = judge_audit(ident, PERM_MOD_LISTED_13)
        assert outcome.status is Status.passed, (ident, outcome.observed)
    # Rules the kernel did not take fail the newer control only.
    without = "".join(
        line for line in PERM_MOD_LISTED_13.splitlines(True) if "fchmodat2" not in line
    )
    assert judge_audit("audit-rules-perm-mod", without).status is Status.passed
    outcome = judge_audit("audit-rules-perm-mod-fchmodat2", without)
    assert outcome.status is Status.failed and outcome.observed.startswith("loaded 0/2")
    # An auditctl whose table lacks the call lists its number, which is not the rule asked for.
    numbered = PERM_MOD_LISTED_13.replace("-S fchmodat2", "-S 452")
    assert judge_audit("audit-rules-perm-mod-fchmodat2", numbered).status is Status.failed


def test_continue_loading_comes_before_every_rule_the_profile_writes() -> None:
    # -c only changes what follows it: its file must sort first in rules.d.
    files = {}
    for sc in load_profile("hardened-server").controls:
        if sc.control.mechanism == "audit":
            path = f"/etc/audit/rules.d/{sc.params['file']}.rules"
            files[path] = mechanism_file(sc.params)
    first = sorted(files, key=augenrules_order)[0]
    assert first == "/etc/audit/rules.d/01-continue-loading.rules"
    control = load_catalog()["audit-continue-loading"]
    ref = control.references.cis_on("debian13")
    assert ref is not None and ref.items == ("6.2.3.35",)
    # Every rule file as the apply script writes it, and augenrules' compilation.
    lines = [
        line for path in sorted(files, key=augenrules_order) for line in files[path].split("\n")
    ]
    compiled = "\n".join(["-D", "-b 8192", "-f 1"] + [x for x in lines if x and x[0] != "#"])
    disk = {**files, "/etc/audit/audit.rules": compiled}
    assert judge_audit("audit-continue-loading", "", disk).status is Status.passed
