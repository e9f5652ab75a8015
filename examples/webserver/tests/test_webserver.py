"""The web tier's own checks, run by `goldsmith validate --tests` in the
fresh boot of the template, beside the profile's controls."""

import re


FETCH = (
    "python3 -c 'import urllib.request as u; r = u.urlopen(\"http://127.0.0.1/\", timeout=10); "
    "print(r.headers.get(\"Server\")); print(r.read().decode())'"
)


def test_nginx_answers_without_its_version(host):
    server, _, body = host.check_output(FETCH).partition("\n")
    assert "example-webserver golden image" in body
    assert server == "nginx"  # server_tokens off: no version in the header


def test_internal_ca_is_trusted(host):
    bundle = host.file("/etc/ssl/certs/ca-certificates.crt").content_string
    ca = host.file("/usr/local/share/ca-certificates/example-internal-ca.crt").content_string
    assert ca.strip().splitlines()[1] in bundle


def test_agent_from_the_signed_repository(host):
    assert host.package("example-agent").is_installed
    assert host.file("/etc/apt/sources.list.d/goldsmith-example-tools.sources").contains(
        "Signed-By: /etc/apt/keyrings/goldsmith-example-tools.asc"
    )


def test_registration_kept_no_token(host):
    # The folder is root's (0750): read it as an operator would, with sudo.
    with host.sudo():
        conf = host.file("/etc/example-agent/registration.conf")
        assert conf.mode == 0o640
        lines = conf.content_string.splitlines()
    assert lines[0] == "site=web-tier"
    assert re.fullmatch(r"token_sha256=[0-9a-f]{64}", lines[1])


def test_service_account_and_dropin(host):
    user = host.user("example-deploy")
    assert user.exists and user.shell == "/usr/sbin/nologin"
    assert host.file("/etc/systemd/system/nginx.service.d/example.conf").contains(
        "Restart=on-failure"
    )
