"""The apt proxy: named in the spec, read from the host, never recorded or kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder import base as base_module
from builder import bootstrap as bootstrap_module
from builder.cli import cli
from builder.errors import InputError, ToolError
from builder.proxy import APT_CONF, AptProxy, ProxyValue, proxy_problem, read_proxy
from builder.seal import render_seal_script, sealing_plan
from builder.spec import DebootstrapBase, load_spec
from validate.needles import host_secret_needles

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "s3cr3t-proxy-token-0123456789"
URL = f"http://builder:{TOKEN}@10.0.2.2:3128"

SPEC = """\
name: proxied
version: 1.0.0
base:
  debootstrap:
    suite: bookworm
profile: baseline
apt_proxy:
  env_from_host: GS_TEST_APT_PROXY
  direct: [10.0.2.2, apt.internal.example]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    "value",
    [
        URL,
        "http://proxy.example:3128",
        "https://proxy.example/",
        "http://user:p%40ss@[::1]:8080",
        "http://10.0.2.2:3142",
    ],
)
def test_proxy_urls_accepted(value: str) -> None:
    assert proxy_problem(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "proxy.example:3128",
        "ftp://proxy.example",
        "socks5h://proxy.example:1080",
        'http://proxy.example";\nAcquire::Foo "x',
        'http://proxy.example:3128\nAPT::Update::Pre-Invoke:: {"id"};',
        "http://u:p@proxy.example:3128/path",
        "http://proxy.example:3128?x=1",
        "http://proxy.example:3128#frag",
        "http://proxy.example;rm -rf /",
        "http://proxy.example:99999",
        "http://pröxy.example",
        "http://proxy.example:3128 ",
        "http://{proxy}:3128",
        "http://:3128",
        "http://proxy\\example",
        "http://" + "a" * 2000,
    ],
)
def test_proxy_urls_refused_without_echoing_the_value(value: str) -> None:
    problem = proxy_problem(value)
    assert problem is not None and problem.startswith("expected")
    assert value == "" or value not in problem


def test_the_apt_conf_is_what_apt_reads(tmp_path: Path) -> None:
    """apt's own parser reads the file: both proxies set, the direct hosts DIRECT."""
    if shutil.which("apt-config") is None:
        pytest.skip("apt-config is not installed")
    conf = tmp_path / "apt.conf"
    conf.write_bytes(ProxyValue(URL, ("10.0.2.2",)).apt_conf())
    env = {**os.environ, "APT_CONFIG": str(conf)}
    out = subprocess.run(
        ["apt-config", "dump"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert f'Acquire::http::Proxy "{URL}";' in out
    assert f'Acquire::https::Proxy "{URL}";' in out
    assert 'Acquire::http::Proxy::10.0.2.2 "DIRECT";' in out
    assert 'Acquire::https::Proxy::10.0.2.2 "DIRECT";' in out


def test_secrets_mask_the_url_and_its_password() -> None:
    value = ProxyValue("http://u:p%21ss-word@proxy:3128", ())
    assert value.secrets == ("http://u:p%21ss-word@proxy:3128", "p%21ss-word", "p!ss-word")
    assert ProxyValue("http://proxy:3128", ()).secrets == ("http://proxy:3128",)


def test_the_bootstrap_environment() -> None:
    # The build VMs reach the host's proxy at QEMU's alias; mmdebstrap, on
    # the host, at loopback, with the same credentials and port.
    host = f"http://builder:{TOKEN}@127.0.0.1:3128"
    env = ProxyValue(URL, ("10.0.2.2", "apt.internal")).environment()
    assert env == {"http_proxy": host, "https_proxy": host, "no_proxy": "10.0.2.2,apt.internal"}
    assert host in ProxyValue(URL, ()).secrets


@pytest.mark.parametrize(
    "url",
    [
        "http://proxy.corp.example:3128",
        "http://user:pw@10.0.2.20:3128",  # another address: not QEMU's alias
        "http://10.0.2.3:3142",
    ],
)
def test_a_proxy_elsewhere_is_the_same_url_for_the_host(url: str) -> None:
    assert ProxyValue(url, ()).host_url == url
    assert ProxyValue(url, ()).environment()["http_proxy"] == url


def test_the_alias_without_credentials_or_port() -> None:
    assert ProxyValue("http://10.0.2.2", ()).host_url == "http://127.0.0.1"
    assert ProxyValue("http://10.0.2.2:8080/", ()).host_url == "http://127.0.0.1:8080/"


def test_read_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = AptProxy("GS_TEST_APT_PROXY", ("10.0.2.2",))
    monkeypatch.delenv("GS_TEST_APT_PROXY", raising=False)
    assert read_proxy(None, tmp_path / "s.yaml") is None
    with pytest.raises(InputError, match="GS_TEST_APT_PROXY is not set") as info:
        read_proxy(proxy, tmp_path / "s.yaml")
    assert info.value.exit_code == 2 and "apt_proxy.env_from_host" in str(info.value)
    monkeypatch.setenv("GS_TEST_APT_PROXY", f'http://u:{TOKEN}@p:1/"')
    with pytest.raises(InputError) as info:
        read_proxy(proxy, tmp_path / "s.yaml")
    assert TOKEN not in str(info.value)
    monkeypatch.setenv("GS_TEST_APT_PROXY", URL)
    assert read_proxy(proxy, tmp_path / "s.yaml") == ProxyValue(URL, ("10.0.2.2",))


def test_the_spec_names_the_variable_and_the_build_key_carries_only_names(
    tmp_path: Path,
) -> None:
    spec = load_spec(write(tmp_path, SPEC))
    assert spec.apt_proxy == AptProxy("GS_TEST_APT_PROXY", ("10.0.2.2", "apt.internal.example"))
    canonical = spec.canonical()
    assert canonical["apt_proxy"] == {
        "env_from_host": "GS_TEST_APT_PROXY",
        "direct": ["10.0.2.2", "apt.internal.example"],
    }
    # A spec without a proxy keeps the canonical form (and build key) it had.
    plain = load_spec(write(tmp_path, SPEC.split("apt_proxy:")[0]))
    assert "apt_proxy" not in plain.canonical()


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ("apt_proxy: http://proxy:3128\n", "apt_proxy"),
        ("apt_proxy: {}\n", "apt_proxy.env_from_host"),
        ("apt_proxy: {env_from_host: 'http://x'}\n", "apt_proxy.env_from_host"),
        ("apt_proxy: {env_from_host: lower}\n", "apt_proxy.env_from_host"),
        ("apt_proxy: {env_from_host: P, url: x}\n", "apt_proxy.url"),
        ("apt_proxy: {env_from_host: P, direct: host}\n", "apt_proxy.direct"),
        ("apt_proxy: {env_from_host: P, direct: ['a b']}\n", "apt_proxy.direct[0]"),
        ("apt_proxy: {env_from_host: P, direct: ['x\";']}\n", "apt_proxy.direct[0]"),
        ("apt_proxy: {env_from_host: P, direct: [3]}\n", "apt_proxy.direct[0]"),
    ],
)
def test_bad_proxy_sections(tmp_path: Path, block: str, field: str) -> None:
    path = write(tmp_path, SPEC.split("apt_proxy:")[0] + block)
    with pytest.raises(InputError) as info:
        load_spec(path)
    assert info.value.exit_code == 2
    assert f": {field}:" in str(info.value) or f"{field}:" in str(info.value), str(info.value)


def test_sealing_removes_the_proxy_file() -> None:
    plan = sealing_plan("gsbuild", "AAAAblob")
    assert any(f"rm -f {APT_CONF}" in c for item in plan for c in item.commands)
    assert f"rm -f {APT_CONF}" in render_seal_script(plan)


def test_validation_searches_the_disk_for_the_proxy_and_its_password() -> None:
    record: dict[str, Any] = {"apt_proxy": {"env_from_host": "GS_TEST_APT_PROXY", "direct": []}}
    needles, unsearched = host_secret_needles(record, {"GS_TEST_APT_PROXY": URL})
    raw = {n.value for n in needles}
    assert URL.encode() in raw and TOKEN.encode() in raw and not unsearched
    _, unsearched = host_secret_needles(record, {})
    assert unsearched == ["host secret GS_TEST_APT_PROXY (not set in goldsmith's environment)"]


def test_the_bootstrap_gets_the_proxy_in_its_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(cmd: list[Any], **kwargs: Any) -> None:
        seen["argv"] = [str(c) for c in cmd]
        seen["env"] = kwargs.get("env")
        raise ToolError(f"mmdebstrap failed with exit code 1\n  E: cannot reach {URL}: {TOKEN}")

    monkeypatch.setattr(bootstrap_module, "run", fake_run)
    spec = DebootstrapBase(
        suite="bookworm",
        mirror="http://deb.debian.org/debian",
        security_mirror="http://deb.debian.org/debian-security",
        packages=(),
    )
    inputs = base_module.bootstrap_inputs(spec)
    with pytest.raises(ToolError) as info:
        bootstrap_module.bootstrap_into(tmp_path, spec, inputs, ProxyValue(URL, ("10.0.2.2",)))
    host = URL.replace("@10.0.2.2:", "@127.0.0.1:")
    assert seen["env"] == {"http_proxy": host, "https_proxy": host, "no_proxy": "10.0.2.2"}
    assert not any(TOKEN in arg for arg in seen["argv"])
    assert not any("Proxy" in arg for arg in seen["argv"])  # no --aptopt into the tree
    assert TOKEN not in info.value.message and "***" in info.value.message
    # The cache key of the base does not depend on the proxy.
    assert "proxy" not in str(inputs).lower()


def test_lint_names_the_proxy_variable_never_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, SPEC)
    monkeypatch.setenv("GS_TEST_APT_PROXY", URL)
    result = CliRunner().invoke(cli, ["lint", str(path)])
    assert result.exit_code == 0, result.output
    assert "host secrets by name: GS_TEST_APT_PROXY" in result.output
    assert "base -> boot -> apt proxy -> cloud-init" in result.output
    assert TOKEN not in result.output
    monkeypatch.setenv("GS_TEST_APT_PROXY", "http://proxy\n")
    result = CliRunner().invoke(cli, ["lint", str(path)])
    assert result.exit_code == 2 and "apt_proxy.env_from_host" in result.output
    monkeypatch.delenv("GS_TEST_APT_PROXY")
    result = CliRunner().invoke(cli, ["lint", str(path)])
    assert result.exit_code == 2 and "GS_TEST_APT_PROXY is not set" in result.output
