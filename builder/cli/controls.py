"""goldsmith controls commands."""

import click

COMMANDS: list[click.Command] = []
