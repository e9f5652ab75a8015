"""A user's own testinfra checks, as `goldsmith validate --tests` runs them.

Named check_*.py so the project's own pytest run does not collect it: it runs
only inside a guest validation, where `host` is the booted template.
"""


def test_sshd_is_running(host):  # type: ignore[no-untyped-def]
    assert host.service("ssh").is_running


def test_root_cannot_log_in_with_a_password(host):  # type: ignore[no-untyped-def]
    assert host.user("root").password in ("*", "!", "!*") or host.user("root").password.startswith(
        "!"
    )


def test_cloud_init_is_installed(host):  # type: ignore[no-untyped-def]
    assert host.package("cloud-init").is_installed
