"""The goldsmith command line. It parses, calls and maps errors to exit codes;
the work lives in the packages below it."""

from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click

from builder import __version__
from builder.errors import GoldsmithError, InputError
from builder.log import log, setup_logging
from hardening.strictdata import escape

# Exit code of a run stopped by Ctrl-C: 128 + SIGINT, as a shell reports it,
# and distinct from 1 (a build or validation that failed).
EXIT_INTERRUPTED = 128 + signal.SIGINT

# Each command's module, imported only when that command runs: a no-op
# `goldsmith build` must not pay for paramiko, pytest and jinja2 at start-up.
COMMAND_MODULES = {
    "build": "builder.cli.build",
    "release": "builder.cli.build",
    "doctor": "builder.cli.build",
    "lint": "builder.cli.lint",
    "validate": "builder.cli.validate",
    "keygen": "builder.cli.stamp",
    "sign": "builder.cli.stamp",
    "verify": "builder.cli.stamp",
    "signers": "builder.cli.stamp",
    "pubkey": "builder.cli.stamp",
    "controls": "builder.cli.controls",
    "profile": "builder.cli.controls",
    "outdated": "builder.cli.pipeline",
    "history": "builder.cli.pipeline",
    "plan": "builder.cli.plan",
    "report": "validate.manifest_report",
    "push": "builder.cli.ship",
    "pull": "builder.cli.ship",
}


class GoldsmithGroup(click.Group):
    """Loads commands lazily and turns GoldsmithError into one line and its exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(module_name)
        commands: list[click.Command] = module.COMMANDS
        command = next((c for c in commands if c.name == cmd_name), None)
        if command is not None:
            _accept_global_options(command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _sigterm_interrupts():
                return super().invoke(ctx)
        except GoldsmithError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"goldsmith: error: {_diagnostics(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            # By now every context manager on the way up has run its cleanup:
            # QEMU killed, the work folder renamed .FAILED-*, cache entries
            # removed. Click would print "Aborted!" and exit 1, the code of
            # a failed build; an interruption is not a verdict.
            log.debug("interrupted", exc_info=True)
            signum = _signal_of(exc)
            if signum == signal.SIGTERM:
                click.echo("goldsmith: interrupted (SIGTERM)", err=True)
            else:
                click.echo("goldsmith: interrupted", err=True)
            ctx.exit(128 + signum)


def _diagnostics(exc: GoldsmithError) -> str:
    """What the user sees. Bad input is one line (and its hint): its message
    quotes values from the user's own files, which may hold newlines or
    terminal escape sequences, so control characters are shown escaped.
    Other errors may carry a tool's output over several lines on purpose."""
    if not isinstance(exc, InputError):
        return exc.diagnostics()
    message = escape(exc.message, 2000)
    return f"{message}\n  hint: {escape(exc.hint, 2000)}" if exc.hint else message


def _signal_of(exc: KeyboardInterrupt) -> int:
    """SIGINT, or the signal a handler turned into this KeyboardInterrupt."""
    text = str(exc.args[0]) if exc.args else ""
    if text.startswith("signal ") and text[7:].isdigit():
        return int(text[7:])
    return int(signal.SIGINT)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a CI runner cancelling a job) unwinds like Ctrl-C, so the same
    cleanup runs; by default Python would die at once and leave QEMU and a
    hidden work folder behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """--debug and --quiet, wherever they stand on the command line."""
    if not value or ctx.resilient_parsing:
        return
    root = ctx.find_root()
    root.ensure_object(dict)
    if param.name == "debug":
        root.obj["debug"] = True
        root.obj["level"] = logging.DEBUG
    elif not root.obj.get("debug"):
        root.obj["level"] = logging.WARNING
    setup_logging(root.obj["level"])


def _verbosity_options() -> list[click.Option]:
    return [
        click.Option(
            ["--debug"],
            is_flag=True,
            expose_value=False,
            callback=_set_verbosity,
            help="Show debug logs and tracebacks.",
        ),
        click.Option(
            ["--quiet", "-q"],
            is_flag=True,
            expose_value=False,
            callback=_set_verbosity,
            help="Only warnings and errors on stderr.",
        ),
    ]


def _accept_global_options(command: click.Command) -> None:
    """People put --debug after the subcommand as often as before it."""
    names = {name for p in command.params for name in getattr(p, "opts", [])}
    if "--debug" not in names:
        command.params.extend(_verbosity_options())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_global_options(sub)


@click.group(cls=GoldsmithGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="goldsmith")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Build, prove and stamp hardened VM templates."""
    ctx.ensure_object(dict)
    ctx.obj.setdefault("debug", False)
    setup_logging(ctx.obj.get("level", logging.INFO))


cli.params.extend(_verbosity_options())


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:  # outside a command (click reports most of these itself)
        click.echo("goldsmith: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
