"""Kernel modules that must not be loadable: modprobe is told to run /bin/false
instead of loading them (blacklist alone still allows an explicit modprobe),
and the check reads modprobe's whole configuration once (modprobe
--showconfig, the rules ``modprobe -n`` would follow) and /proc/modules."""

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
LOADED = Probe("proc-modules", "cat /proc/modules", isolated=False)
BLACKLIST = Probe(
    "modprobe-config",
    "modprobe --showconfig 2>/dev/null | grep -E '^(blacklist|install) ' || true",
    isolated=False,
)
DISABLERS = ("/bin/false", "/bin/true", "/usr/bin/false", "/usr/bin/true")


@dataclasses.dataclass(frozen=True)
class KmodSpec:
    module: str

    @property
    def kernel_name(self) -> str:
        return self.module.replace("-", "_")


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
            f"  if modprobe -r {q(spec.module)} 2>/dev/null; then gs_changed; else\n"
            f"    gs_note {q(spec.module + ' is in use; it stays loaded until reboot')}\n"
            "  fi\n"
            "fi"
        )

    def probes(self, spec: KmodSpec) -> list[Probe]:
        return [LOADED, BLACKLIST]

    def evaluate(self, spec: KmodSpec, facts: Facts) -> Outcome:
        expected = f"{spec.module}: modprobe runs /bin/false, blacklisted, not loaded"
        try:
            loaded_text = facts.text(LOADED.name)
            config = facts.text(BLACKLIST.name)
        except FactsError as exc:
            return error(expected, str(exc))
        if not loaded_text.strip():
            return error(expected, "/proc/modules was empty or unreadable")
        loaded = any(line.split(" ", 1)[0] == spec.kernel_name for line in loaded_text.splitlines())
        # modprobe prints module names with underscores; accept either spelling.
        names = {spec.module, spec.kernel_name}
        blacklisted = False
        install = ""
        for line in config.splitlines():
            words = line.split()
            if len(words) >= 2 and words[1] in names:
                if words[0] == "blacklist":
                    blacklisted = True
                elif words[0] == "install":
                    install = " ".join(words[2:])
        disabled = install in DISABLERS
        says = f"install {install}" if install else "no install rule (modprobe would load it)"
        observed = (
            f"{says}; {'blacklisted' if blacklisted else 'not blacklisted'}; "
            f"{'loaded' if loaded else 'not loaded'}"
        )
        ok = disabled and blacklisted and not loaded
        return Outcome(Status.passed if ok else Status.failed, expected, observed)
