"""The mechanisms controls are made of, by name."""

from __future__ import annotations

from typing import Any

from hardening.mechanisms.audit import AuditRules
from hardening.mechanisms.base import Mechanism, Outcome
from hardening.mechanisms.cmdline import Cmdline
from hardening.mechanisms.config_kv import ConfigKv, Faillock, LoginDefs, Pwhistory, Pwquality
from hardening.mechanisms.file_perm import FilePerm
from hardening.mechanisms.file_scan import FileScan
from hardening.mechanisms.kmod import KernelModule
from hardening.mechanisms.mount import Mount
from hardening.mechanisms.packages import PackageAbsent, PackagePresent
from hardening.mechanisms.script import Script
from hardening.mechanisms.service import Service
from hardening.mechanisms.sshd import Sshd
from hardening.mechanisms.sysctl import Sysctl

MECHANISMS: dict[str, Mechanism[Any]] = {
    m.name: m
    for m in (
        Sysctl(),
        Sshd(),
        KernelModule(),
        PackageAbsent(),
        PackagePresent(),
        Service(),
        FilePerm(),
        FileScan(),
        ConfigKv(),
        LoginDefs(),
        Pwquality(),
        Faillock(),
        Pwhistory(),
        Mount(),
        Cmdline(),
        AuditRules(),
        Script(),
    )
}

__all__ = ["MECHANISMS", "Mechanism", "Outcome"]
