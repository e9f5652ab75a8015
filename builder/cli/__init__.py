"""The goldsmith command line. It parses, calls and maps errors to exit codes;
the work lives in the packages below it."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from builder import __version__
from builder.errors import GoldsmithError
from builder.log import setup_logging


class GoldsmithGroup(click.Group):
    """Turns GoldsmithError into one line on stderr and its exit code."""

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


def _register() -> None:
    # Each module owns a family of commands and lists them in COMMANDS.
    from builder.cli import build, controls, pipeline, stamp, validate
    from validate import manifest_report

    for module in (build, validate, stamp, controls, pipeline, manifest_report):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("goldsmith: interrupted", err=True)
        sys.exit(130)
