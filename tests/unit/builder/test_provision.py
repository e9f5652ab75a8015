"""Provisioning steps: strict reading, hashing, and commands that carry values
as data. A local session runs the rendered commands with bash in a temporary
folder, so quoting is proven by execution, not by string comparison."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder import cloudinit, provision
from builder import provisioner as provisioner_module
from builder.errors import BuildError, InputError
from builder.provision import (
    AptStep,
    FileStep,
    host_secrets,
    parse_steps,
)
from builder.provisioner import Provisioner, ansible_environment
from builder.run import program_path
from builder.spec_section import Section
from builder.ssh import RunResult

HOSTILE = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "; touch PWNED",
    "a\ntouch PWNED",
    "'; touch PWNED; '",
    '"; touch PWNED; "',
    "\\$(touch PWNED)",
    "$HOME",
]


def steps_of(tmp_path: Path, items: Any) -> tuple[provision.Step, ...]:
    section = Section(tmp_path / "spec.yaml", "", {"provision": items}, {"provision": False})
    return parse_steps(section, tmp_path)


def error_of(tmp_path: Path, items: Any) -> str:
    with pytest.raises(InputError) as info:
        steps_of(tmp_path, items)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "spec.yaml") + ": provision")
    assert "\n" not in message
    return message


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<h1>hi</h1>\n")
    (tmp_path / "site" / "sub").mkdir()
    (tmp_path / "site" / "sub" / "a.txt").write_text("a\n")
    (tmp_path / "one.conf").write_text("listen 80;\n")
    (tmp_path / "key.asc").write_text(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQ==\n-----END PGP PUBLIC KEY BLOCK-----\n"
    )
    return tmp_path


def test_every_kind_parses(tree: Path) -> None:
    steps = steps_of(
        tree,
        [
            {"file": {"source": "one.conf", "destination": "/etc/x.conf", "mode": "0640"}},
            {"name": "site", "file": {"source": "site", "destination": "/srv/www"}},
            {"shell": {"inline": "echo hi", "env": {"A": "b"}, "env_from_host": ["TOKEN"]}},
            {
                "apt": {
                    "name": "acme",
                    "uri": "http://10.0.2.2:8080/repo",
                    "suite": "stable",
                    "key": "key.asc",
                    "packages": ["acme-agent"],
                }
            },
            {"reboot": {}},
        ],
    )
    kinds = [s.kind for s in steps]
    assert kinds == ["file", "file", "shell", "apt", "reboot"]
    first = steps[0]
    assert isinstance(first, FileStep) and first.mode == 0o640
    assert [i.path for i in steps[1].inputs] == ["site/index.html", "site/sub/a.txt"]
    assert steps[1].label == "provision[1] (site)"
    assert steps[2].env_from_host == ("TOKEN",)
    assert isinstance(steps[3], AptStep) and steps[3].components == ("main",)


def test_inputs_are_spec_relative_and_change_with_one_byte(tree: Path) -> None:
    item = [{"file": {"source": "one.conf", "destination": "/etc/x.conf"}}]
    before = steps_of(tree, item)[0]
    assert before.inputs[0].path == "one.conf"
    assert str(tree) not in str(before.record())
    (tree / "one.conf").write_text("listen 81;\n")
    after = steps_of(tree, item)[0]
    assert before.inputs[0].sha256 != after.inputs[0].sha256
    assert provision.steps_key([before]) != provision.steps_key([after])


def test_secret_values_are_not_in_the_key_or_record(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN", "s3cret-value")
    steps = steps_of(tree, [{"shell": {"inline": "true", "env_from_host": ["TOKEN"]}}])
    assert host_secrets(steps, tree / "spec.yaml") == {"TOKEN": "s3cret-value"}
    assert "s3cret" not in repr(provision.steps_key(steps))
    assert "s3cret" not in repr(steps[0].record())
    monkeypatch.delenv("TOKEN")
    with pytest.raises(InputError, match="TOKEN is not set"):
        host_secrets(steps, tree / "spec.yaml")


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ("not a list", "expected a list of steps"),
        ([{"file": {}, "shell": {}}], "exactly one of"),
        ([{}], "exactly one of"),
        ([{"bogus": {}}], "unknown key"),
        ([{"name": "a\nb", "reboot": {}}], "without control characters"),
        ([{"file": {"source": "one.conf", "destination": "etc/x"}}], "absolute guest path"),
        ([{"file": {"source": "one.conf", "destination": "/etc/../x"}}], "absolute guest path"),
        ([{"file": {"source": "one.conf", "destination": "/etc/x\n"}}], "control characters"),
        ([{"file": {"source": "one.conf", "destination": "/"}}], "absolute guest path"),
        ([{"file": {"source": "one.conf", "destination": "/x", "mode": 644}}], "octal mode"),
        ([{"file": {"source": "one.conf", "destination": "/x", "mode": "999"}}], "octal"),
        ([{"file": {"source": "one.conf", "destination": "/x", "owner": "Root;"}}], "user"),
        ([{"file": {"source": "one.conf", "destination": "/x", "group": "$(id)"}}], "group"),
        ([{"file": {"source": "missing", "destination": "/x"}}], "does not exist"),
        ([{"file": {"source": "one.conf", "destination": "/x", "extra": 1}}], "unknown key"),
        ([{"shell": {}}], "exactly one of inline or script"),
        ([{"shell": {"inline": "x", "script": "one.conf"}}], "exactly one of inline"),
        ([{"shell": {"inline": "x", "env": {"bad-name": "x"}}}], "environment variable"),
        ([{"shell": {"inline": "x", "env": {"A": ["x"]}}}], "a string or a number"),
        ([{"shell": {"inline": "x", "env": {"A": "a\x00b"}}}], "NUL"),
        ([{"shell": {"inline": "x", "env_from_host": ["a;b"]}}], "environment variable"),
        ([{"shell": {"inline": "x", "env": {"A": "1"}, "env_from_host": ["A"]}}], "also set"),
        ([{"shell": {"script": "site"}}], "is a folder"),
        ([{"apt": {"name": "acme", "uri": "http://h/r", "suite": "s"}}], "required"),
        (
            [{"apt": {"name": "acme", "uri": "http://h/r", "suite": "s", "key": "one.conf"}}],
            "refuses unsigned repositories",
        ),
        (
            [{"apt": {"name": "acme", "uri": "http://h/r\nx", "suite": "s", "key": "key.asc"}}],
            "uri",
        ),
        (
            [{"apt": {"name": "acme", "uri": "ftp://h/r", "suite": "s", "key": "key.asc"}}],
            "URL",
        ),
        (
            [{"apt": {"name": "ac me", "uri": "http://h/r", "suite": "s", "key": "key.asc"}}],
            "repository name",
        ),
        (
            [{"apt": {"name": "a", "uri": "http://h/r", "suite": "s\n", "key": "key.asc"}}],
            "suite",
        ),
        (
            [
                {
                    "apt": {
                        "name": "a",
                        "uri": "http://h/r",
                        "suite": "s",
                        "key": "key.asc",
                        "components": ["main contrib"],
                    }
                }
            ],
            "component",
        ),
        (
            [
                {
                    "apt": {
                        "name": "a",
                        "uri": "http://h/r",
                        "suite": "s",
                        "key": "key.asc",
                        "packages": ["x;y"],
                    }
                }
            ],
            "package",
        ),
        ([{"reboot": {"now": True}}], "takes no settings"),
        ([{"ansible": {"playbook": "site"}}], "not a regular file"),
    ],
)
def test_bad_steps_are_one_line_errors(tree: Path, items: Any, expected: str) -> None:
    assert expected in error_of(tree, items)


def test_symlinks_and_special_files_are_refused(tree: Path) -> None:
    (tree / "site" / "link").symlink_to("/etc/shadow")
    assert "symbolic link" in error_of(
        tree, [{"file": {"source": "site", "destination": "/srv/www"}}]
    )
    (tree / "site" / "link").unlink()
    os.mkfifo(tree / "site" / "fifo")
    assert "special file" in error_of(
        tree, [{"file": {"source": "site", "destination": "/srv/www"}}]
    )
    (tree / "alias").symlink_to(tree / "one.conf")
    assert "symbolic link" in error_of(tree, [{"file": {"source": "alias", "destination": "/x"}}])


class LocalSession:
    """Runs each command with bash on this host, stdin attached: what the guest
    would run, in a temporary folder (commands run as the test's user)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.commands: list[tuple[str, bytes | None]] = []
        self.secrets = list(secrets)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def run(
        self,
        command: str,
        *,
        step: str,
        timeout: float = 60,
        check: bool = True,
        stdin: bytes | None = None,
    ) -> RunResult:
        self.commands.append((command, stdin))
        proc = subprocess.run(
            ["bash", "-c", command], input=stdin or b"", capture_output=True, timeout=timeout
        )
        out = self.redact((proc.stdout + proc.stderr).decode(errors="replace"))
        if check and proc.returncode:
            raise BuildError(f"step {step!r} failed: {proc.returncode}: {out}")
        return RunResult(proc.returncode, out)

    def close(self) -> None:
        pass


def provisioner(session: LocalSession, secrets: dict[str, str] | None = None) -> Provisioner:
    return Provisioner(
        session,  # type: ignore[arg-type]
        machine=None,  # type: ignore[arg-type]
        access=None,  # type: ignore[arg-type]
        spec_path=Path("spec.yaml"),
        secrets=secrets or {},
        boot_timeout=10,
        step_timeout=60,
    )


@pytest.fixture
def stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "stage"
    monkeypatch.setattr(provisioner_module, "STAGE", str(folder))
    return folder


@pytest.mark.skipif(os.geteuid() != 0, reason="tar --same-owner needs root")
@pytest.mark.parametrize("hostile", [h for h in HOSTILE if "\n" not in h])
def test_file_step_writes_hostile_names_literally(
    tree: Path, stage: Path, hostile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    guest = tree / "guest"
    dest = f"{guest}/{hostile}/x.conf"
    step = steps_of(tree, [{"file": {"source": "one.conf", "destination": dest}}])[0]
    provisioner(LocalSession()).run_step(step)
    assert (Path(dest)).read_text() == "listen 80;\n"
    assert not (tree / "PWNED").exists() and not Path("PWNED").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="tar --same-owner needs root")
def test_file_step_copies_a_folder_with_owner_and_mode(tree: Path, stage: Path) -> None:
    dest = tree / "guest" / "www"
    step = steps_of(
        tree,
        [{"file": {"source": "site", "destination": str(dest), "mode": "0640", "group": "root"}}],
    )[0]
    provisioner(LocalSession()).run_step(step)
    assert (dest / "sub" / "a.txt").read_text() == "a\n"
    assert (dest / "index.html").stat().st_mode & 0o777 == 0o640
    assert (dest / "sub").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("hostile", HOSTILE)
def test_shell_env_values_arrive_literally(
    tree: Path, stage: Path, hostile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tree / "out.txt"
    monkeypatch.setenv("HOME", str(tree))
    steps = steps_of(
        tree,
        [
            {
                "shell": {
                    "inline": f'printf "%s|%s" "$VALUE" "$TOKEN" > {out}',
                    "env": {"VALUE": hostile},
                    "env_from_host": ["TOKEN"],
                }
            }
        ],
    )
    session = LocalSession(["tok-" + hostile])
    runner = provisioner(session, {"TOKEN": "tok-" + hostile})
    monkeypatch.setattr(provisioner_module, "STAGE", str(stage))
    # cd /root in the rendered command: run from wherever root's home is.
    runner.run_step(steps[0])
    assert out.read_text() == f"{hostile}|tok-{hostile}"
    assert not (tree / "PWNED").exists() and not Path("/root/PWNED").exists()
    # The secret travelled on stdin, never in a command line.
    assert all("tok-" not in command for command, _ in session.commands)
    assert not list(stage.glob("*.env")), "the environment file is removed before the script runs"


def test_failing_shell_step_names_index_name_code_and_tail(tree: Path, stage: Path) -> None:
    steps = steps_of(
        tree, [{"name": "agent", "shell": {"inline": "echo working\necho broken >&2\nexit 7"}}]
    )
    with pytest.raises(BuildError) as info:
        provisioner(LocalSession()).run_step(steps[0])
    assert str(info.value) == "provision[0] (agent) failed: exit code 7"
    assert info.value.hint is not None and "broken" in info.value.hint


def test_shell_runs_with_errexit(tree: Path, stage: Path) -> None:
    marker = tree / "after"
    steps = steps_of(tree, [{"shell": {"inline": f"false\ntouch {marker}"}}])
    with pytest.raises(BuildError, match="exit code 1"):
        provisioner(LocalSession()).run_step(steps[0])
    assert not marker.exists()


def test_secret_is_masked_in_failure_output(tree: Path, stage: Path) -> None:
    steps = steps_of(
        tree, [{"shell": {"inline": 'echo "token is $TOKEN"; exit 1', "env_from_host": ["TOKEN"]}}]
    )
    with pytest.raises(BuildError) as info:
        provisioner(LocalSession(["hunter2"]), {"TOKEN": "hunter2"}).run_step(steps[0])
    assert "hunter2" not in str(info.value) + str(info.value.hint)
    assert "token is ***" in str(info.value.hint)


def test_apt_step_writes_a_signed_by_source(tree: Path) -> None:
    step = steps_of(
        tree,
        [
            {
                "apt": {
                    "name": "acme",
                    "uri": "http://10.0.2.2:8080/repo",
                    "suite": "stable",
                    "key": "key.asc",
                    "packages": ["acme-agent"],
                }
            }
        ],
    )[0]
    session = LocalSession()
    recorded: list[tuple[str, bytes | None]] = []

    def record(command: str, **kwargs: Any) -> RunResult:
        recorded.append((command, kwargs.get("stdin")))
        return RunResult(0, "")

    session.run = record  # type: ignore[method-assign]
    provisioner(session).run_step(step)
    sources = next(data for cmd, data in recorded if cmd.endswith("acme.sources"))
    assert sources is not None
    assert yaml.safe_load(sources.decode().replace(": ", ": '").replace("\n", "'\n")) == {
        "Types": "deb",
        "URIs": "http://10.0.2.2:8080/repo",
        "Suites": "stable",
        "Components": "main",
        "Signed-By": "/etc/apt/keyrings/goldsmith-acme.asc",
    }
    final = recorded[-1][0]
    assert "--error-on=any update" in final and "install acme-agent" in final
    assert "trusted=yes" not in final


def test_spec_steps_are_part_of_its_meaning(tree: Path) -> None:
    from builder.spec import load_spec

    spec = tree / "spec.yaml"
    spec.write_text(
        "name: web\nversion: '1.0.0'\nbase: {debootstrap: {suite: bookworm}}\n"
        "profile: baseline\nprovision:\n"
        "  - file: {source: one.conf, destination: /etc/x.conf}\n"
        "  - shell: {inline: 'echo hi', env_from_host: [TOKEN]}\n"
    )
    before = load_spec(spec)
    assert [s.kind for s in before.provision] == ["file", "shell"]
    meaning = before.canonical()["provision"]
    assert meaning[0]["inputs"] == [
        {"path": "one.conf", "sha256": before.provision[0].inputs[0].sha256}
    ]
    (tree / "one.conf").write_text("listen 8080;\n")
    assert load_spec(spec).canonical() != before.canonical()


def test_ansible_gets_its_settings_and_the_steps_secrets_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOLDSMITH_TEST_SECRET", "not for ansible")
    monkeypatch.setenv("TOKEN", "from the host")
    monkeypatch.setenv("ANSIBLE_CONFIG", "/tmp/someone-elses.cfg")
    playbook = tmp_path / "ansible" / "site.yml"
    env = ansible_environment(tmp_path / "step", playbook, {"TOKEN": "from the host"})
    assert env["TOKEN"] == "from the host"
    assert "GOLDSMITH_TEST_SECRET" not in env and "ANSIBLE_CONFIG" not in env
    assert env["HOME"] == str(tmp_path / "step")
    assert env["ANSIBLE_LOCAL_TEMP"] == str(tmp_path / "step" / "tmp")
    assert env["ANSIBLE_ROLES_PATH"] == str(tmp_path / "ansible" / "roles")
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert env["PATH"] == program_path() and env["LANG"] == "C.UTF-8"


class ScriptedSession:
    """A guest connection whose boot-id reads follow a script: a string is the
    boot id read, an exception is what reading it raised."""

    def __init__(self, answers: list[str | Exception], secrets: Iterable[str] = ()) -> None:
        self.answers = answers
        self.secrets = list(secrets)
        self.commands: list[str] = []
        self.closed = False

    def run(self, command: str, *, step: str, timeout: float = 60, **_: object) -> RunResult:
        self.commands.append(command)
        if "boot_id" in command:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return RunResult(0, answer + "\n")
        return RunResult(0, "")

    def close(self) -> None:
        self.closed = True


def test_reboot_waits_out_connections_to_the_dying_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the reboot is asked for, the old boot's sshd may still answer, and
    a connection to it may drop mid-read when the guest goes down: neither is a
    failure; only a new boot id ends the wait."""
    from builder import ssh
    from builder.errors import GuestError
    from builder.provision import RebootStep

    first = ScriptedSession(["old-boot"], secrets=["s3cret"])
    # Each reconnection: the old boot once more, a drop mid-read, then the new boot.
    later: list[list[str | Exception]] = [
        ["old-boot"],
        [GuestError("step: the SSH connection dropped mid-command")],
        ["new"],
    ]
    made: list[ScriptedSession] = []

    def session(client: object, *, secrets: Iterable[str] = ()) -> ScriptedSession:
        made.append(ScriptedSession(later.pop(0), secrets=secrets))
        return made[-1]

    monkeypatch.setattr(ssh, "wait_for_machine", lambda machine, access, *, timeout: object())
    monkeypatch.setattr(ssh, "Session", session)
    monkeypatch.setattr("builder.provisioner.time.sleep", lambda seconds: None)
    worker = provisioner(first)  # type: ignore[arg-type]
    worker.session = first  # type: ignore[assignment]
    worker.run_step(RebootStep(index=0, kind="reboot", name="again"))
    assert first.closed and any("systemctl reboot" in c for c in first.commands)
    assert len(made) == 3 and made[0].closed and made[1].closed and not made[2].closed
    assert worker.session is made[2]  # type: ignore[comparison-overlap]
    assert all(s.secrets == ["s3cret"] for s in made)  # masked as before the reboot
    assert made[2].commands[-1] == cloudinit.wait_script(worker.step_timeout)
