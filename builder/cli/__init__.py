"""The goldsmith command line. It parses, calls and maps errors to exit codes;
the work lives in the packages below it."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from builder import __version__
from builder.errors import GoldsmithError
from builder.log import setup_logging

# Each command's module, imported only when that command runs: a no-op
# `goldsmith build` must not pay for paramiko, pytest and jinja2 at start-up.
COMMAND_MODULES = {
    "build": "builder.cli.build",
    "release": "builder.cli.build",
    "doctor": "builder.cli.build",
    "validate": "builder.cli.validate",
    "keygen": "builder.cli.stamp",
    "sign": "builder.cli.stamp",
    "verify": "builder.cli.stamp",
    "controls": "builder.cli.controls",
    "profile": "builder.cli.controls",
    "outdated": "builder.cli.pipeline",
    "history": "builder.cli.pipeline",
    "report": "validate.manifest_report",
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
        return next((c for c in commands if c.name == cmd_name), None)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GoldsmithError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"goldsmith: error: {exc.diagnostics()}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=GoldsmithGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="goldsmith")
@click.option("--debug", is_flag=True, help="Show debug logs and tracebacks.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Build, prove and stamp hardened VM templates."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    setup_logging(logging.DEBUG if debug else logging.INFO)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("goldsmith: interrupted", err=True)
        sys.exit(130)
