"""``python -m vilms.trainers …``: the training commands without the compiler CLI.

Used by ``vilms train --all -j N`` for its worker processes and by the trainer
container's entrypoint. Errors are rendered like the ``vilms`` CLI does and mapped to
its exit codes (1 failed action / invalid input, 2 wrong usage).
"""

from __future__ import annotations

import sys

import click

from vilms.compiler.errors import VilmsError

from .commands import COMMANDS


@click.group()
def cli() -> None:
    """ViLMS training commands."""


for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="vilms", standalone_mode=False)
    except VilmsError as exc:
        click.echo(f"error: {exc.render()}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
