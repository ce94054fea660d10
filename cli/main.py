"""The root `vilms` group and the one error boundary.

Every error a user can cause is a :class:`~vilms.compiler.errors.VilmsError`; this is the
only place that catches errors and picks exit codes (:class:`~vilms.compiler.errors.ExitCode`:
0 success, 1 invalid input or failed action, 2 usage, 130 interrupted). A missing optional
dependency names the extra that installs it; anything else is a bug in ViLMS and is reported
as one line (with the traceback under ``VILMS_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from vilms.compiler.errors import ExitCode, VilmsError

from . import demo, project, release, serving, training

# optional dependency → the extra that installs it
EXTRA_OF = {
    **dict.fromkeys(("torch", "transformers", "peft", "bitsandbytes", "accelerate", "safetensors", "tokenizers",
                     "numpy", "gguf", "matplotlib", "tqdm"), "train"),
    **dict.fromkeys(("httptools", "orjson", "uvloop"), "gateway"),
    "llama_cpp": "serve",
    "httpx": "serve",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vilms", prog_name="vilms")
def cli() -> None:
    """Compile vilms.yaml into everything needed to fine-tune and serve LLMs."""


for _module in (project, release, serving, training, demo):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run `vilms` with ``argv`` (default: the process's arguments) and exit with its code."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    """Run `vilms` and return its exit code instead of exiting (for callers and tests)."""
    try:
        result: Any = cli.main(args=argv, prog_name="vilms", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return ExitCode.INTERRUPTED
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:  # click's own usage errors: exit 2
        exc.show()
        return exc.exit_code
    except VilmsError as exc:
        click.echo(exc.render(), err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return ExitCode.INTERRUPTED
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None or os.environ.get("VILMS_DEBUG"):
            raise
        click.echo(f"this command needs {exc.name}, which is not installed\n  hint: pip install 'vilms[{extra}]'", err=True)
        return ExitCode.FAILED
    except Exception as exc:  # a bug in vilms, not bad input: short message, details on demand
        if os.environ.get("VILMS_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc}\n"
                   "  hint: this is a bug in vilms; rerun with VILMS_DEBUG=1 for details and report it", err=True)
        return ExitCode.FAILED
    return result if isinstance(result, int) else ExitCode.OK
