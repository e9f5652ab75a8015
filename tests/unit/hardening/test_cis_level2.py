"""Level 2 controls against what a booted Debian guest really shows: fixes found
by proving cis-level2-server in a guest (tests/bench/level2.py)."""

from __future__ import annotations

from hardening.catalog import load_catalog
from hardening.mechanisms.audit import normalise


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
