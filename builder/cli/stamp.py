"""goldsmith stamp commands."""

import click

COMMANDS: list[click.Command] = []
