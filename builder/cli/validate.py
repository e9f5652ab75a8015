"""goldsmith validate commands."""

import click

COMMANDS: list[click.Command] = []
