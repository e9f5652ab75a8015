"""Kernel modules that must not be loadable: modprobe is told to run /bin/false
instead of loading them (blacklist alone still allows an explicit modprobe),
and the check asks modprobe what it would do and whether the module is loaded."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from hardening.errors import FactsError
from hardening.facts import Facts, Probe
from hardening.mechanisms.base import Mechanism, Outcome, error, get_str
from hardening.results import Status
from hardening.shell import heredoc, q

MODULE = r"[a-z0-9_-]+"
LOADED = Probe("proc-modules", "cat /proc/modules")
BLACKLIST = Probe(
    "modprobe-config",
    "modprobe --showconfig 2>/dev/null | grep -E '^(blacklist|install) ' || true",
)


@dataclasses.dataclass(frozen=True)
class KmodSpec:
    module: str

    @property
    def kernel_name(self) -> str:
        return self.module.replace("-", "_")


def probe_dry_run(module: str) -> Probe:
    return Probe(f"modprobe:{module}", f"modprobe -n -v {q(module)} 2>&1")


class KernelModule(Mechanism[KmodSpec]):
    name = "kmod"
    phase = 40
    keys = frozenset({"module"})
    required = frozenset({"module"})

    def build(self, params: Mapping[str, Any]) -> KmodSpec:
        return KmodSpec(get_str(params, "module", MODULE))

    def render(self, spec: KmodSpec) -> str:
        path = f"/etc/modprobe.d/60-goldsmith-{spec.module}.conf"
        content = (
            f"# goldsmith: {spec.module} must not load\n"
            f"install {spec.module} /bin/false\nblacklist {spec.module}\n"
        )
        return (
            f"gs_install_content {q(path)} 0644 {heredoc(content)}\n"
            f"if grep -q {q('^' + spec.kernel_name + ' ')} /proc/modules; then\n"
            f"  modprobe -r {q(spec.module)} 2>/dev/null && gs_changed"
            f" || gs_note {q(spec.module + ' is in use; it stays loaded until reboot')}\n"
            "fi"
        )

    def probes(self, spec: KmodSpec) -> list[Probe]:
        return [probe_dry_run(spec.module), LOADED, BLACKLIST]

    def evaluate(self, spec: KmodSpec, facts: Facts) -> Outcome:
        expected = f"{spec.module}: modprobe runs /bin/false, blacklisted, not loaded"
        try:
            dry = facts.get(f"modprobe:{spec.module}")
            loaded_text = facts.text(LOADED.name)
            config = facts.text(BLACKLIST.name)
        except FactsError as exc:
            return error(expected, str(exc))
        if not loaded_text.strip():
            return error(expected, "/proc/modules was empty or unreadable")
        loaded = any(line.split(" ", 1)[0] == spec.kernel_name for line in loaded_text.splitlines())
        names = {spec.module, spec.kernel_name}
        blacklisted = any(
            line.split()[:2] in (["blacklist", n] for n in names) for line in config.splitlines()
        )
        dry_text = dry.text.strip()
        not_found = dry.rc != 0 and "not found" in dry_text.lower()
        disabled = any(
            line.strip()
            in (f"install {tool}" for tool in ("/bin/false", "/bin/true", "/usr/bin/false"))
            for line in dry_text.splitlines()
        )
        if not_found:
            modprobe_says = "module not present in this kernel"
        else:
            modprobe_says = "modprobe -n: " + (
                dry_text.splitlines()[-1] if dry_text else "(nothing)"
            )
        observed = (
            f"{modprobe_says}; {'blacklisted' if blacklisted else 'not blacklisted'}; "
            f"{'loaded' if loaded else 'not loaded'}"
        )
        ok = (disabled or not_found) and blacklisted and not loaded
        return Outcome(Status.passed if ok else Status.failed, expected, observed)
