"""Level 2 controls against what a booted Debian guest really shows: fixes found
by proving cis-level2-server in a guest (tests/bench/level2.py)."""

from __future__ import annotations

from typing import Any

from hardening.catalog import load_catalog
from hardening.facts import FILES, Facts, Section
from hardening.mechanisms import MECHANISMS
from hardening.mechanisms.audit import LIVE_RULES, normalise
from hardening.mechanisms.base import Outcome
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
