"""Sealing: what a template must not carry, and the script that removes it.

The plan is data: each item says what goes and why. The rendered script
prints ``goldsmith-sealed: <what>`` for each item it handled, which the build
records in build.json. The values it works with (the builder's name and key)
are shell-quoted; nothing from the guest or the spec is spliced into it.

Order matters, and the last items are about the disk rather than files:

0. timers stop, so no scheduled job writes or deletes behind the seal's back;
1. everything that identifies the build is deleted or emptied, the builder's
   own account last among them, and the audit daemon stops before the logs
   are emptied (it would record the seal itself) (the SSH session running this script keeps
   working: it is already authenticated, and the script runs as root);
2. login records go after the account, so nothing written later reaches a file
   (the files are recreated empty by systemd-tmpfiles at the next boot);
3. free space: a deleted file's bytes stay in its freed blocks. ``sync``
   commits the journal transaction that freed them (ext4 hands freed blocks
   back to its allocator, and to FITRIM, only when that transaction commits);
   then a file takes every free block and is deleted, because a discard is
   not enough: QEMU unmaps whole 64 KiB qcow2 clusters only, so a 4 KiB block
   freed next to live data keeps its bytes after any trim. The file's blocks
   are reserved with fallocate and zeroed on the device where they lie
   (FIEMAP, then BLKZEROOUT, which virtio-blk passes to QEMU as write-zeroes:
   no zero byte crosses the guest's memory); where that cannot work (no
   extent map, a device that is not a block device), zeros are written
   through the file with dd, which is slower under emulation and as sure;
4. the ext4 journal still holds copies of metadata blocks from the build
   (directory entries naming the machine-id, the cloud-init instance): it is
   checkpointed and its blocks zeroed (EXT4_IOC_CHECKPOINT, ZEROOUT);
5. ``fstrim`` then discards every free cluster, so the compacted template
   stores none of it; the guest powers off from a detached tail.

``validate/blockscan.py`` proves the result on the image itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex

from builder.proxy import APT_CONF as APT_PROXY_CONF


@dataclasses.dataclass(frozen=True)
class SealItem:
    what: str  # reported in build.json
    why: str  # the security reason; rendered as a comment in the script
    commands: tuple[str, ...]


# EXT4_IOC_CHECKPOINT = _IOW('f', 43, __u32); flag 2 = EXT4_IOC_CHECKPOINT_FLAG_ZEROOUT
# (Linux >= 5.13): checkpoint the journal, then write zeros over its log blocks.
_SCRUB_JOURNAL = (
    "import fcntl, os, struct, sys; "
    "fcntl.ioctl(os.open(sys.argv[1], os.O_RDONLY), 0x4004662B, struct.pack('I', 2))"
)

# Takes every free block of a file system into one new file (argv[1]) with
# fallocate, then zeroes the file's extents on the block device it lives on
# (argv[2]) with BLKZEROOUT. Prints the bytes zeroed, then how many of them
# had to be written through the file; exits non-zero when the extents cannot
# be mapped exactly (nothing written then) or zeroed.
# FS_IOC_FIEMAP = _IOWR('f', 11, struct fiemap); BLKZEROOUT = _IO(0x12, 127).
_ZERO_BY_EXTENT = """\
import errno, fcntl, os, stat, struct, sys
fill, device = sys.argv[1], sys.argv[2]
if not stat.S_ISBLK(os.stat(device).st_mode):
    sys.exit(f"{device} is not a block device")
fd = os.open(fill, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
offset, chunk = 0, 1 << 30
while chunk >= 4096:
    try:
        os.posix_fallocate(fd, offset, chunk)
        offset += chunk
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        offset = os.fstat(fd).st_size
        chunk //= 2
os.fsync(fd)
extents, start, last = [], 0, False
while not last:
    reply = bytearray(struct.pack("QQIIII", start, 2**64 - 1, 1, 0, 256, 0) + bytes(56 * 256))
    fcntl.ioctl(fd, 0xC020660B, reply, True)
    count = struct.unpack_from("I", reply, 20)[0]
    if count == 0:
        break
    for i in range(count):
        logical, physical, length, _, _, flags = struct.unpack_from("QQQQQI", reply, 32 + 56 * i)
        # Anything but a plain (written or unwritten) extent: no exact address.
        if flags & ~(0x1 | 0x800):
            sys.exit(f"extent at {logical} has flags {flags:#x}")
        extents.append((logical, physical, length))
        start, last = logical + length, bool(flags & 0x1)
# BLKZEROOUT drops the device's cached pages of the range first, and fails
# (EBUSY) where a page is still in use: clean cached pages are dropped first.
with open("/proc/sys/vm/drop_caches", "w") as f:
    f.write("3")
dev, zeros, written = os.open(device, os.O_WRONLY), bytes(1 << 22), 0
for logical, physical, length in extents:
    try:
        fcntl.ioctl(dev, 0x127F, struct.pack("QQ", physical, length))
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
        # That range only: zeros written through the file, as dd would.
        for at in range(logical, logical + length, len(zeros)):
            written += os.pwrite(fd, zeros[: min(len(zeros), logical + length - at)], at)
os.fsync(dev)
os.fsync(fd)
print(sum(length for _, _, length in extents), written)
"""

# Shell functions of the free-space item. $1 is a mount point found in the guest.
_FREE_SPACE_FUNCTIONS = (
    # ext4 keeps reserved_clusters (2 %, at most 4096 clusters) even from root;
    # they are lent to the fill so no free block is left out, then given back.
    "gs_zero_fill() { local fill=\"${1%/}/.goldsmith-zero-fill\" src dev resv keep='' "
    "zeroed=''; "
    'src=$(readlink -f "$(findmnt -no SOURCE --target "$1")"); dev=$(basename "$src"); '
    'resv="/sys/fs/ext4/$dev/reserved_clusters"; '
    'if [ -w "$resv" ]; then keep=$(cat "$resv"); echo 0 > "$resv"; fi; '
    f'if zeroed=$(python3 -B -c {shlex.quote(_ZERO_BY_EXTENT)} "$fill" "$src"); then '
    'set -- "$1" $zeroed; '
    'echo "goldsmith: zeroed $(( ${2:-0} >> 20 )) MiB of free space on $1 (write-zeroes on '
    '$src, $(( ${3:-0} >> 20 )) MiB of it written through the file)"; '
    'else rm -f "$fill"; '
    # Large direct writes for the bulk, then 4 KiB buffered ones for the rest.
    'dd if=/dev/zero of="$fill" bs=4M oflag=direct status=none 2>/dev/null || true; '
    'dd if=/dev/zero of="$fill" bs=4k oflag=append conv=notrunc status=none 2>/dev/null || true; '
    'sync -f "$fill"; '
    'echo "goldsmith: zeroed $(( $(stat -c %s "$fill") >> 20 )) MiB of free space on $1 '
    '(written through a file)"; fi; '
    'rm -f "$fill"; '
    'if [ -n "$keep" ]; then echo "$keep" > "$resv"; fi; '
    'sync -f "$1"; }',
    "gs_scrub_journal() { "
    f'if python3 -B -c {shlex.quote(_SCRUB_JOURNAL)} "$1"; then '
    'echo "goldsmith: journal of $1 checkpointed and zeroed"; '
    'else echo "goldsmith: journal of $1 NOT zeroed" >&2; fi; }',
)


def sealing_plan(builder_user: str, builder_key_blob: str) -> tuple[SealItem, ...]:
    user = shlex.quote(builder_user)
    blob = shlex.quote(builder_key_blob)
    return (
        SealItem(
            "timers stopped for the rest of the build",
            "a scheduled job (tmpfiles cleaning, log rotation, apt) would write logs or free "
            "blocks after the seal has emptied or zeroed them",
            ("systemctl stop '*.timer' 2>/dev/null || true",),
        ),
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
            "SSH known_hosts files",
            "they list the hosts the build connected to",
            ("rm -f /root/.ssh/known_hosts /root/.ssh/known_hosts.old /home/*/.ssh/known_hosts*",),
        ),
        SealItem(
            "cloud-init instance state, seed, logs and rendered network config",
            "each deployment must run cloud-init as a first boot with its own data; the "
            "network config is rendered again for each instance",
            (
                # What `cloud-init clean --logs --seed` does, without starting
                # cloud-init's Python (about 4 s under emulation): its logs,
                # everything under /var/lib/cloud, then the executables a
                # package put in clean.d (cloud-init >= 23.1 runs them).
                "rm -f /var/log/cloud-init.log /var/log/cloud-init-output.log",
                "rm -rf /var/lib/cloud/* /var/lib/cloud/seed",
                "for f in /etc/cloud/clean.d/*; do "
                'if [ -f "$f" ] && [ -x "$f" ]; then "$f"; fi; done',
                "rm -f /etc/systemd/network/10-cloud-init-*.network",
                "rm -f /etc/cloud/cloud.cfg.d/50-curtin-networking.cfg",
                "rm -f /etc/network/interfaces.d/50-cloud-init /etc/netplan/50-cloud-init.yaml",
                "rm -f /etc/NetworkManager/system-connections/cloud-init-*.nmconnection",
            ),
        ),
        SealItem(
            "SSH host keys",
            "instances sharing host keys could impersonate each other",
            ("rm -f /etc/ssh/ssh_host_*",),
        ),
        SealItem(
            "machine-id (left empty) and random seed",
            "an empty machine-id makes systemd generate a unique one at first boot; "
            "instances must not start from one shared random seed",
            (
                ": > /etc/machine-id",
                "rm -f /var/lib/dbus/machine-id",
                # Stopping saves a seed now; once stopped, power-off saves none.
                "systemctl stop systemd-random-seed.service 2>/dev/null || true",
                "rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret",
            ),
        ),
        SealItem(
            "goldsmith's apt proxy configuration",
            "the build's proxy URL may hold credentials, and instances reach apt their own way",
            (f"rm -f {APT_PROXY_CONF}",),
        ),
        SealItem(
            "package manager caches and lists",
            "they carry nothing an instance needs, and debconf's backups may hold answers",
            (
                "apt-get clean",
                "rm -rf /var/lib/apt/lists/*",
                "rm -f /var/cache/debconf/*-old",
            ),
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
                "rm -f /root/.bash_history /root/.zsh_history /root/.lesshst /root/.viminfo "
                "/root/.python_history",
                "rm -f /home/*/.bash_history /home/*/.zsh_history /home/*/.lesshst "
                "/home/*/.viminfo /home/*/.python_history",
            ),
        ),
        SealItem(
            "crash data, mail and cron spools, DHCP leases, persistent net rules",
            "they record the build VM's crashes, mail, jobs and network identity (its MAC)",
            (
                "rm -rf /var/crash/* /var/lib/systemd/coredump/* /var/spool/abrt/* /var/log/dump/*",
                "rm -rf /var/mail/* /var/spool/mail/*",
                "find /var/spool/cron -mindepth 2 -type f ! -name .SEQ -delete 2>/dev/null || true",
                "rm -f /var/lib/dhcp/*.leases* /var/lib/dhclient/* /var/lib/NetworkManager/*.lease",
                "rm -f /etc/udev/rules.d/70-persistent-net.rules",
            ),
        ),
        SealItem(
            "host identities of directory and management services",
            "a Kerberos keytab, SSSD cache, Samba secrets, Puppet or Dovecot state or an LVM "
            "devices file belongs to one host, never to a template",
            (
                "rm -f /etc/krb5.keytab /etc/lvm/devices/system.devices",
                "rm -rf /var/lib/sss/db/* /var/lib/samba/* /var/lib/dovecot/*",
                "rm -rf /var/lib/puppet/*/* /var/log/puppet/* /var/log/sssd/* /var/log/samba/*",
            ),
        ),
        SealItem(
            f"builder account {builder_user} with its home, key and sudo rule",
            "the build's own access must not outlive the build; shadow-utils keeps the old "
            "account files as backups (/etc/passwd- ...), which still name it",
            (
                f"userdel --force --remove {user} || true",
                "rm -f /etc/sudoers.d/90-cloud-init-users",
                f"rm -rf /home/{user}",
                "rm -f /etc/passwd- /etc/shadow- /etc/group- /etc/gshadow- /etc/subuid- "
                "/etc/subgid-",
            ),
        ),
        SealItem(
            "editor and account-database backups",
            "a backup keeps what its original no longer says (/var/backups/passwd.bak ...)",
            (
                "find /etc /root /srv /var /home -xdev -type f \\( -name '*~' -o -name '*.bak' "
                "-o -name '*.bak.[0-9]*' \\) -delete 2>/dev/null || true",
            ),
        ),
        SealItem(
            "audit daemon stopped",
            "auditd would go on writing the seal's own records into the audit log after the "
            "logs are emptied; Debian's unit refuses systemctl stop (RefuseManualStop), so "
            "the daemon gets SIGTERM, which it obeys with immutable rules (-e 2) too, and "
            "the kernel keeps its records for the rest of the build",
            (
                "auditd=$(pidof auditd || true)",
                'if [ -n "$auditd" ]; then auditctl --signal TERM 2>/dev/null '
                "|| kill -TERM $auditd; fi",
                # It flushes and closes its log before exiting: wait for that.
                "for _ in $(seq 1 60); do pidof auditd > /dev/null || break; sleep 0.5; done",
                'if pidof auditd > /dev/null; then echo "goldsmith: auditd did not stop" >&2; '
                "exit 1; fi",
            ),
        ),
        SealItem(
            "logs",
            "build logs hold the build VM's identity and activity",
            (
                # journald keeps writing to /run only from here on.
                "journalctl --relinquish-var || true",
                # A new, empty journal folder: the old one's directory block still
                # holds the deleted entry named after the build's machine-id.
                "if [ -d /var/log/journal ]; then find /var/log/journal -mindepth 1 -delete; "
                "cp -a --attributes-only /var/log/journal /var/log/.journal.new; "
                "rmdir /var/log/journal; mv /var/log/.journal.new /var/log/journal; fi",
                "find /var/log -type f \\( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \\) "
                "-delete",
                "find /var/log -type f -exec truncate -s 0 {} +",
                "rm -f /var/lib/logrotate/status",
                # The emptied files keep no group-write or world access, and
                # cloud-init's logs (removed with its instance state above) are
                # recreated 0640: cloud-init keeps an existing log's mode but
                # creates a missing one world-readable, and they can hold secrets.
                "find /var/log -type f -perm /g+wx,o+rwx -exec chmod g-wx,o-rwx {} +",
                "install -m 0640 -o root -g adm /dev/null /var/log/cloud-init.log",
                "install -m 0640 -o root -g adm /dev/null /var/log/cloud-init-output.log",
            ),
        ),
        SealItem(
            "login records (wtmp, btmp, lastlog)",
            "they hold the build VM's boots, logins and shutdown; once removed, the records "
            "written until power-off go nowhere, and systemd-tmpfiles creates them empty "
            "at the next boot",
            ("rm -f /var/log/wtmp /var/log/btmp /var/log/lastlog",),
        ),
        SealItem(
            "free space zeroed, journal zeroed, then trimmed",
            "deleted files' bytes stay in free blocks and in the journal until overwritten",
            (
                *_FREE_SPACE_FUNCTIONS,
                "mounts=$(findmnt -ln -o TARGET -t ext2,ext3,ext4 -O rw || true)",
                # Commit first: blocks freed by an uncommitted transaction are not free yet.
                "sync",
                # auditd acts (up to halting) on a full disk: paused while the fill
                # holds every block; the kernel queues its records meanwhile.
                "auditd=$(pidof auditd || true)",
                'if [ -n "$auditd" ]; then kill -STOP $auditd; fi',
                'while IFS= read -r m; do [ -n "$m" ] && gs_zero_fill "$m"; done <<< "$mounts"',
                'if [ -n "$auditd" ]; then kill -CONT $auditd; fi',
                'while IFS= read -r m; do [ -n "$m" ] && gs_scrub_journal "$m"; done <<< "$mounts"',
                "fstrim --verbose --all || true",
                # Whether each disk honours discards at all (0: it ignores them).
                "for q in /sys/block/*/queue/discard_max_bytes; do case $q in "
                '*/loop*|*/ram*|*/sr*) ;; *) echo "goldsmith: $q = $(cat "$q")";; esac; done',
            ),
        ),
    )


# The seal script's detached tail: it powers off once the builder has closed
# its SSH connection, so the exit status has been delivered (the builder
# closes right after reading it); 10 s at most, and without ss a fixed 2 s.
POWEROFF_AFTER_SSH_CLOSES = (
    "if command -v ss > /dev/null; then for _ in $(seq 1 100); do "
    "ss -Htn state established '( sport = :22 )' | grep -q . || break; sleep 0.1; done; "
    "else sleep 2; fi; systemctl poweroff --no-block"
)


def render_seal_script(
    plan: tuple[SealItem, ...], *, poweroff: str = POWEROFF_AFTER_SSH_CLOSES
) -> str:
    """Every item runs in the foreground, its output in the build log; only the
    power-off is detached, so the SSH session running the script ends cleanly.
    ``poweroff`` is the detached tail (the Packer benchmark, which ignores the
    exit status and keeps its connection open, powers off at once)."""
    lines = ["#!/bin/bash", "set -euo pipefail"]
    for item in plan:
        lines.append(f"# {item.what}: {item.why}")
        lines.extend(item.commands)
        lines.append(f"echo {shlex.quote('goldsmith-sealed: ' + item.what)}")
    # setsid + nohup: the tail survives the end of the SSH session that started it.
    tail = poweroff
    lines.append(f"setsid nohup bash -c {shlex.quote(tail)} > /dev/null 2>&1 < /dev/null &")
    return "\n".join(lines) + "\n"


def seal_script_digest() -> str:
    """The seal script's digest with one fixed user and key: part of the build key,
    so a template sealed by an older script is built again, not reused."""
    script = render_seal_script(sealing_plan("builder", "BUILDER-KEY-BLOB"))
    return hashlib.sha256(script.encode("utf-8")).hexdigest()


def sealed_items(output: str) -> list[str]:
    prefix = "goldsmith-sealed: "
    return [line[len(prefix) :] for line in output.splitlines() if line.startswith(prefix)]
