"""A user's own testinfra checks, as `goldsmith validate --tests` runs them.

Named check_*.py so the project's own pytest run does not collect it: it runs
only inside a guest validation, where `host` is the booted template.
"""


def test_sshd_is_running(host):  # type: ignore[no-untyped-def]
    assert host.service("ssh").is_running


def test_root_has_no_usable_password(host):  # type: ignore[no-untyped-def]
    # The shadow file needs root: checks that read it use host.sudo().
    with host.sudo():
        password = host.user("root").password
    assert password in ("*", "") or password.startswith("!")


def test_cloud_init_is_installed(host):  # type: ignore[no-untyped-def]
    assert host.package("cloud-init").is_installed
