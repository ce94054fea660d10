"""Ending a command with an exit code of the one table, without an error message."""

from __future__ import annotations

from typing import NoReturn

import click

from vilms.compiler.errors import ExitCode


def exit_with(code: ExitCode) -> NoReturn:
    """End the command with ``code`` (e.g. `vilms status` when a process is unhealthy)."""
    raise click.exceptions.Exit(int(code))
