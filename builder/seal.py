"""Sealing: what a template must not carry, and the script that removes it.

The plan is data: each item says what goes and why. The rendered script
prints ``goldsmith-sealed: <what>`` for each item it handled, which the build
records in build.json. The builder's own account goes last, with a detached
tail that also powers the guest off, so the SSH session running the script is
not cut mid-way.
"""

from __future__ import annotations

import dataclasses
import shlex


@dataclasses.dataclass(frozen=True)
class SealItem:
    what: str  # reported in build.json
    why: str  # the security reason; rendered as a comment in the script
    commands: tuple[str, ...]


def sealing_plan(builder_user: str, builder_key_blob: str) -> tuple[SealItem, ...]:
    user = shlex.quote(builder_user)
    blob = shlex.quote(builder_key_blob)
    return (
        SealItem(
            "builder key in any authorized_keys",
            "the one-run build key must grant nothing in any instance",
            (
                "for f in /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys; do "
                f'[ -f "$f" ] && grep -vF -- {blob} "$f" > "$f.tmp" || true; '
                '[ -f "$f.tmp" ] && cat "$f.tmp" > "$f" && rm -f "$f.tmp"; done',
            ),
        ),
        SealItem(
            "cloud-init instance state, seed and logs",
            "each deployment must run cloud-init as a first boot with its own data",
            (
                "cloud-init clean --logs --seed",
                "rm -rf /var/lib/cloud/* /var/lib/cloud/seed",
                "rm -f /etc/systemd/network/10-cloud-init-*.network",
                "rm -f /etc/cloud/cloud.cfg.d/50-curtin-networking.cfg",
            ),
        ),
        SealItem(
            "SSH host keys",
            "instances sharing host keys could impersonate each other",
            ("rm -f /etc/ssh/ssh_host_*",),
        ),
        SealItem(
            "machine-id (left empty)",
            "an empty machine-id makes systemd generate a unique one at first boot",
            (
                ": > /etc/machine-id",
                "rm -f /var/lib/dbus/machine-id",
                "rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret",
            ),
        ),
        SealItem(
            "apt caches and package lists",
            "they carry nothing an instance needs and bloat the template",
            ("apt-get clean", "rm -rf /var/lib/apt/lists/*"),
        ),
        SealItem(
            "temporary files",
            "build leftovers must not reach instances",
            (
                "find /tmp /var/tmp -mindepth 1 -delete",
                # A tmpfs mounted on /tmp during the build hides the disk's own /tmp.
                "if mountpoint -q /tmp; then d=$(mktemp -d /run/goldsmith-root.XXXXXX); "
                'mount --bind / "$d" && find "$d/tmp" -mindepth 1 -delete; '
                'umount "$d"; rmdir "$d"; fi',
            ),
        ),
        SealItem(
            "shell histories",
            "histories can hold commands and secrets typed during the build",
            (
                "rm -f /root/.bash_history /root/.lesshst /root/.viminfo /root/.python_history",
                "rm -f /home/*/.bash_history /home/*/.lesshst /home/*/.viminfo "
                "/home/*/.python_history",
            ),
        ),
        SealItem(
            "logs",
            "build logs hold the build VM's identity and activity",
            (
                # journald keeps writing to /run only from here on.
                "journalctl --relinquish-var || true",
                "rm -rf /var/log/journal/*",
                "find /var/log -type f \\( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \\) "
                "-delete",
                "find /var/log -type f -exec truncate -s 0 {} +",
                # The emptied files keep no group-write or world access, and
                # cloud-init's logs (removed by `cloud-init clean --logs`) are
                # recreated 0640: cloud-init keeps an existing log's mode but
                # creates a missing one world-readable, and they can hold secrets.
                "find /var/log -type f -perm /g+wx,o+rwx -exec chmod g-wx,o-rwx {} +",
                "install -m 0640 -o root -g adm /dev/null /var/log/cloud-init.log",
                "install -m 0640 -o root -g adm /dev/null /var/log/cloud-init-output.log",
            ),
        ),
        SealItem(
            f"builder account {builder_user} with its home, key and sudo rule",
            "the build's own access must not outlive the build",
            (
                f"userdel --force --remove {user} 2>/dev/null || true",
                "rm -f /etc/sudoers.d/90-cloud-init-users",
                f"rm -rf /home/{user}",
            ),
        ),
        SealItem(
            "free space released (fstrim)",
            "discarded blocks let the compacted template hold only live data",
            ("fstrim --verbose --all || true",),
        ),
    )


def render_seal_script(plan: tuple[SealItem, ...]) -> str:
    """Everything but the last two items runs in the foreground; the account
    removal, trim and power-off run detached so our session ends cleanly."""
    *foreground, account, trim = plan
    lines = ["#!/bin/bash", "set -euo pipefail"]
    for item in foreground:
        lines.append(f"# {item.what}: {item.why}")
        lines.extend(item.commands)
        lines.append(f"echo {shlex.quote('goldsmith-sealed: ' + item.what)}")
    tail = [
        "sleep 2",
        *account.commands,
        *trim.commands,
        "sync",
        "systemctl poweroff --no-block",
    ]
    lines.append(f"# {account.what}: {account.why}")
    lines.append(f"# {trim.what}: {trim.why}")
    lines.append(f"echo {shlex.quote('goldsmith-sealed: ' + account.what)}")
    lines.append(f"echo {shlex.quote('goldsmith-sealed: ' + trim.what)}")
    # setsid + nohup: the tail survives the end of the SSH session that started it.
    detached = "; ".join(tail)
    lines.append(f"setsid nohup bash -c {shlex.quote(detached)} > /dev/null 2>&1 < /dev/null &")
    return "\n".join(lines) + "\n"


def sealed_items(output: str) -> list[str]:
    prefix = "goldsmith-sealed: "
    return [line[len(prefix) :] for line in output.splitlines() if line.startswith(prefix)]
