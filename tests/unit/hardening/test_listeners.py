"""svc-listeners-allowed: a socket on the network counts when a second look
still finds it, and each offender is named with its port, protocol and
process. Its check runs here against a stand-in for ss that answers each
look from its own file, as ss -Hltunp prints."""

from __future__ import annotations

import subprocess
from pathlib import Path

from test_custom_controls import BASH

from hardening.catalog import load_catalog

CONTROL = load_catalog()["svc-listeners-allowed"]
ALLOWED = "22,68,546,323,123,5353"

SSHD = (
    'tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=512,fd=3))\n'
    'tcp LISTEN 0 128 [::]:22 [::]:* users:(("sshd",pid=512,fd=4))\n'
    'udp UNCONN 0 0 10.0.2.15%ens3:68 0.0.0.0:* users:(("systemd-network",pid=366,fd=18))\n'
    'udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:* users:(("systemd-resolve",pid=300,fd=14))\n'
    'tcp LISTEN 0 4096 127.0.0.1:25 0.0.0.0:* users:(("exim4",pid=700,fd=5))\n'
)
NTP_CLIENT = 'udp UNCONN 0 0 0.0.0.0:33126 0.0.0.0:* users:(("systemd-timesyn",pid=256,fd=9))\n'
BACKDOOR = (
    'tcp LISTEN 0 5 0.0.0.0:4444 0.0.0.0:* users:(("nc",pid=900,fd=3))\n'
    'tcp LISTEN 0 5 [::]:4444 [::]:* users:(("nc",pid=900,fd=4))\n'
)


def check(tmp_path: Path, *looks: str) -> tuple[list[str], int]:
    """The check's offenders when ss prints ``looks[0]``, then ``looks[1]``
    ...; and how many times ss was run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for number, text in enumerate(looks, start=1):
        (tmp_path / f"look{number}").write_text(text)
    (bin_dir / "ss").write_text(
        "#!/bin/sh\n"
        f'[ "$*" = -Hltunp ] || exit 2\n'
        f"n=$(( $(cat {tmp_path}/count 2>/dev/null || echo 0) + 1 ))\n"
        f"echo $n > {tmp_path}/count\n"
        f"cat {tmp_path}/look$n\n"
    )
    (bin_dir / "ss").chmod(0o755)
    (bin_dir / "sleep").symlink_to("/bin/true")  # the second look at once
    done = subprocess.run(
        [BASH, "-c", CONTROL.params["check"]],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "LC_ALL": "C", "allowed_listen_ports": ALLOWED},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines(), int((tmp_path / "count").read_text())


def test_approved_and_loopback_listeners_pass_with_one_look(tmp_path: Path) -> None:
    assert check(tmp_path, SSHD) == ([], 1)


def test_a_client_socket_gone_at_the_second_look_is_no_listener(tmp_path: Path) -> None:
    assert check(tmp_path, SSHD + NTP_CLIENT, SSHD) == ([], 2)


def test_a_listener_still_there_is_named_once_per_port_and_protocol(tmp_path: Path) -> None:
    offenders, looks = check(tmp_path, SSHD + BACKDOOR, SSHD + BACKDOOR)
    assert offenders == ["4444/tcp nc"]
    assert looks == 2


def test_only_what_both_looks_found_counts(tmp_path: Path) -> None:
    later = 'udp UNCONN 0 0 0.0.0.0:40001 0.0.0.0:* users:(("dig",pid=950,fd=3))\n'
    offenders, _ = check(tmp_path, SSHD + NTP_CLIENT + BACKDOOR, SSHD + BACKDOOR + later)
    assert offenders == ["4444/tcp nc"]


def test_a_socket_without_a_process_is_named_with_a_question_mark(tmp_path: Path) -> None:
    kernel = "udp UNCONN 0 0 0.0.0.0:4789 0.0.0.0:*\n"
    offenders, _ = check(tmp_path, SSHD + kernel, SSHD + kernel)
    assert offenders == ["4789/udp ?"]


def test_a_port_allowed_by_the_profile_passes_on_any_address(tmp_path: Path) -> None:
    chrony = 'udp UNCONN 0 0 0.0.0.0:123 0.0.0.0:* users:(("chronyd",pid=400,fd=7))\n'
    assert check(tmp_path, SSHD + chrony) == ([], 1)
