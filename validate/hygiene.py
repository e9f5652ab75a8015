"""Hygiene: proof that sealing worked, read from a fresh deployment boot.

Always on, whatever the profile. One remote command gathers the evidence;
each check is a pure function of it and of build.json, so the logic is
tested without a VM.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Callable, Mapping

from builder.cloudinit import CloudInitStatus
from builder.proxy import APT_CONF as APT_PROXY_CONF
from hardening.host import Host
from hardening.results import CheckResult, Status

BUILDER_USER = "gsbuild"
MARK = "::goldsmith-hygiene::"

# Copies of the account databases that keep a removed account's lines.
ACCOUNT_BACKUPS = (
    "/etc/passwd-",
    "/etc/shadow-",
    "/etc/group-",
    "/etc/gshadow-",
    "/etc/subuid-",
    "/etc/subgid-",
    "/var/backups/passwd.bak",
    "/var/backups/shadow.bak",
    "/var/backups/group.bak",
    "/var/backups/gshadow.bak",
)
_UTMP_RECORD = re.compile(r"^\[(\d+)\] \[[^\]]*\] \[[^\]]*\] \[([^\]]*)\]")
_BOOT_TIME = 2  # ut_type of the record systemd-update-utmp writes at each boot

# Where a private key could hide; /usr/share and /usr/lib ship only packaged files.
KEY_SEARCH_ROOTS = ("/etc", "/root", "/home", "/var", "/opt", "/srv", "/usr/local", "/tmp")

_SECTIONS: dict[str, str] = {
    "authorized_keys": (
        "for f in /root/.ssh/authorized_keys* /home/*/.ssh/authorized_keys* "
        '/etc/ssh/authorized_keys*; do [ -f "$f" ] && sed "s|^|$f: |" "$f"; done; true'
    ),
    "builder_account": (
        f"getent passwd {BUILDER_USER} || true; "
        f"grep -rl {BUILDER_USER} /etc/sudoers /etc/sudoers.d 2>/dev/null || true"
    ),
    "machine_id": "cat /etc/machine-id",
    "host_keys": 'for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf "$k"; done',
    # cloud-init's own status comes from the files read when the caller
    # waited for it (check_hygiene, builder.cloudinit).
    "cloud_init": (
        "echo instance: $(cat /var/lib/cloud/data/instance-id "
        "2>/dev/null); echo instances: $(ls /var/lib/cloud/instances 2>/dev/null)"
    ),
    "histories": (
        "find /root /home -maxdepth 2 -type f \\( -name '.*_history' -o -name '.lesshst' "
        "-o -name '.viminfo' \\) -size +0 2>/dev/null; true"
    ),
    "seed": (
        "ls -A /var/lib/cloud/seed 2>/dev/null; find "
        + " ".join(KEY_SEARCH_ROOTS)
        + " -xdev -type f \\( -iname 'seed.iso' -o -iname '*cidata*' -o -name 'user-data' \\)"
        " -not -path '/var/lib/cloud/instances/*' -print 2>/dev/null; true"
    ),
    "private_keys": (
        "find "
        + " ".join(KEY_SEARCH_ROOTS)
        # Readable by group/others, or owned by a non-root user (who can read it).
        + " -xdev -type f \\( -perm /044 -o ! -uid 0 \\) -size -256k -print0 2>/dev/null"
        " | xargs -0r grep -lE -- '-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' 2>/dev/null; true"
    ),
    # One line per boot, each with its 32-hex boot id (newer journalctl adds a header).
    "boots": "journalctl --list-boots --no-pager 2>/dev/null | grep -cE '[0-9a-f]{32}' || true",
    # shadow-utils' backups of the account files (useradd writes them again in
    # this boot, from the sealed files), and the daily copies in /var/backups.
    "account_backups": (
        f"grep -lw {BUILDER_USER} " + " ".join(ACCOUNT_BACKUPS) + " 2>/dev/null; true"
    ),
    # Every record in wtmp, one per line ("[type] [pid] [id] [user] ..."); a
    # missing file or tool is said so, not mistaken for an empty log.
    "login_records": (
        "if [ ! -e /var/log/wtmp ]; then echo absent; "
        "elif ! command -v utmpdump > /dev/null; then echo no-utmpdump; "
        "else utmpdump /var/log/wtmp 2>/dev/null; fi"
    ),
    # The apt proxy file the build wrote (its URL may hold credentials).
    "apt_proxy": f"ls -d {APT_PROXY_CONF} 2>/dev/null; true",
    # This boot's start (seconds since the epoch) and the time of each audit
    # log's first record: one older than the boot came from the build.
    "audit_log": (
        "echo btime $(awk '/^btime /{print $2}' /proc/stat); "
        'for f in /var/log/audit/audit.log*; do [ -f "$f" ] || continue; '
        "t=$(grep -o -m1 'msg=audit([0-9]*' \"$f\" | grep -o '[0-9]*$' || true); "
        'echo "$f ${t:-empty}"; done'
    ),
}


def hygiene_script() -> str:
    parts = [f"echo {shlex.quote(MARK + name)}; ( {cmd} ) 2>&1" for name, cmd in _SECTIONS.items()]
    return "\n".join(parts)


def parse_sections(output: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK) :], [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


@dataclasses.dataclass(frozen=True)
class Expectations:
    """What the build recorded, and who we are in this boot."""

    builder_key_blob: str  # base64 blob of the builder's one-run public key
    build_machine_id: str
    build_host_keys: Mapping[str, str]  # type -> SHA256 fingerprint
    instance_id: str  # this validation boot's cloud-init instance-id
    pinned_host_key: str  # fingerprint of the host key goldsmith generated for this boot


Check = Callable[[dict[str, str], Expectations], tuple[bool, str, str]]


def _no_builder_key(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    hits = [
        line.split(":")[0]
        for line in ev["authorized_keys"].splitlines()
        if ex.builder_key_blob in line
    ]
    return (not hits, "the builder key in no authorized_keys", "; ".join(hits) or "absent")


def _no_builder_account(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    text = ev["builder_account"]
    return (not text, f"no {BUILDER_USER} account or sudo rule", text or "none")


def _machine_id(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    mid = ev["machine_id"]
    ok = len(mid) == 32 and mid != ex.build_machine_id
    return (ok, f"a new machine-id, not the build VM's {ex.build_machine_id}", mid or "empty")


def _host_keys(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    fingerprints = {
        line.split()[-1].strip("()").lower(): line.split()[1]
        for line in ev["host_keys"].splitlines()
        if len(line.split()) >= 4
    }
    reused = sorted(set(fingerprints.values()) & set(ex.build_host_keys.values()))
    ok = bool(fingerprints) and not reused and ex.pinned_host_key in fingerprints.values()
    observed = ", ".join(f"{t} {f}" for t, f in sorted(fingerprints.items())) or "none"
    if reused:
        observed += f"; reused from the build VM: {', '.join(reused)}"
    return (ok, "host keys made for this instance, none of the build VM's", observed)


def _cloud_init(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    text = ev["cloud_init"]
    lines = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines())
    )
    instances = lines.get("instances", "").split()
    ok = (
        lines.get("status") == "done"
        and lines.get("instance") == ex.instance_id
        and instances == [ex.instance_id]
    )
    observed = (
        f"status {lines.get('status', '?')}, instance {lines.get('instance', '?')}, "
        f"instances on disk: {' '.join(instances) or 'none'}"
    )
    return (ok, f"status done, first boot as {ex.instance_id}, no earlier instance", observed)


def _no_history(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    return (not ev["histories"], "no shell history files", ev["histories"] or "none")


def _no_seed(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    return (not ev["seed"], "no cloud-init seed left in the image", ev["seed"] or "none")


def _no_readable_private_key(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    text = ev["private_keys"]
    return (not text, "no private key readable by non-root users", text or "none")


def _no_build_logs(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    boots = ev["boots"].strip()
    return (boots in ("0", "1"), "the journal holds this boot only", f"{boots or '?'} boots")


def _no_account_backups(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    text = ev["account_backups"]
    expected = f"no backup of the account files names {BUILDER_USER} (absent or clean)"
    return (not text, expected, text or "none")


def _login_records(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    text = ev["login_records"]
    expected = f"wtmp holds this boot only: one boot record, first, and no {BUILDER_USER}"
    if text == "absent":
        return (True, expected, "no wtmp")
    records = [_UTMP_RECORD.match(line) for line in text.splitlines() if line.strip()]
    if not records or not all(records):
        raise ValueError(f"wtmp not readable: {text.splitlines()[0] if text else 'no output'}")
    kinds = [int(m.group(1)) for m in records if m]
    users = {m.group(2).strip() for m in records if m}
    boots = kinds.count(_BOOT_TIME)
    ok = boots == 1 and kinds[0] == _BOOT_TIME and BUILDER_USER not in users
    observed = f"{len(kinds)} records, {boots} boot record(s)"
    if kinds[0] != _BOOT_TIME:
        observed += f", the first of type {kinds[0]} (records older than this boot)"
    if BUILDER_USER in users:
        observed += f", records of {BUILDER_USER}"
    return (ok, expected, observed)


# How far a record's time may precede the boot time the kernel reports (btime
# is derived from the clock and uptime, and moves when the clock is stepped).
_AUDIT_SLACK = 60


def _audit_log_this_boot(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    lines = ev["audit_log"].splitlines()
    btime = int(lines[0].split()[1])
    expected = "every audit log starts in this boot (sealing stopped auditd before emptying it)"
    older = []
    for line in lines[1:]:
        path, _, first = line.rpartition(" ")
        if first != "empty" and int(first) < btime - _AUDIT_SLACK:
            older.append(f"{path} starts {btime - int(first)} s before this boot")
    observed = "; ".join(older) or (
        f"{len(lines) - 1} audit log(s), none older than this boot" if lines[1:] else "no audit log"
    )
    return (not older, expected, observed)


def _no_apt_proxy(ev: dict[str, str], ex: Expectations) -> tuple[bool, str, str]:
    text = ev["apt_proxy"]
    return (not text, f"no {APT_PROXY_CONF} (the build's proxy)", text or "none")


CHECKS: tuple[tuple[str, str, str, Check], ...] = (
    ("HYG-01", "Builder key removed from every authorized_keys", "high", _no_builder_key),
    ("HYG-02", "Builder account and sudo rule removed", "high", _no_builder_account),
    ("HYG-03", "machine-id is new in each instance", "medium", _machine_id),
    ("HYG-04", "SSH host keys are new in each instance", "high", _host_keys),
    ("HYG-05", "cloud-init ran as a first boot", "medium", _cloud_init),
    ("HYG-06", "No shell history left", "medium", _no_history),
    ("HYG-07", "No cloud-init seed left", "high", _no_seed),
    ("HYG-08", "No private key readable by non-root users", "high", _no_readable_private_key),
    ("HYG-09", "No logs from the build left", "low", _no_build_logs),
    ("HYG-10", "Account backups do not name the builder", "medium", _no_account_backups),
    ("HYG-11", "Login records hold this boot only", "low", _login_records),
    ("HYG-12", "The build's apt proxy configuration is gone", "high", _no_apt_proxy),
    ("HYG-13", "The audit log holds this boot only", "low", _audit_log_this_boot),
)


def evaluate_hygiene(evidence: dict[str, str], expect: Expectations) -> list[CheckResult]:
    results = []
    for check_id, title, severity, check in CHECKS:
        try:
            ok, expected, observed = check(evidence, expect)
            status = Status.passed if ok else Status.failed
        except (KeyError, IndexError, ValueError) as exc:
            status, expected, observed = Status.error, "readable evidence", f"unreadable: {exc}"
        results.append(
            CheckResult(
                id=check_id,
                title=title,
                area="hygiene",
                status=status,
                expected=expected,
                observed=observed,
                severity=severity,
            )
        )
    return results


def check_hygiene(
    host: Host, expect: Expectations, cloud_init_status: CloudInitStatus
) -> list[CheckResult]:
    """One remote command (run as root by the caller), then local evaluation.
    ``cloud_init_status`` is what cloud-init's own files said when the caller
    waited for it to settle (builder.cloudinit)."""
    result = host.run(hygiene_script())
    evidence = parse_sections(result.stdout)
    evidence["cloud_init"] = cloud_init_status.text() + "\n" + evidence.get("cloud_init", "")
    return evaluate_hygiene(evidence, expect)
