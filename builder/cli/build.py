"""goldsmith build commands."""

import click

COMMANDS: list[click.Command] = []
