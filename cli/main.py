"""The root `vilms` group and the one error boundary.

Every error a user can cause is a :class:`~vilms.compiler.errors.VilmsError`; this is the
only place that catches errors and picks exit codes (:class:`~vilms.compiler.errors.ExitCode`:
0 success, 1 invalid input or failed action, 2 usage, 3 a trained run's gate did not pass,
130 interrupted). A missing optional dependency names the extra that installs it; anything else is a bug in ViLMS and is reported
as one line (with the traceback under ``VILMS_DEBUG=1``).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, NoReturn

import click

from vilms.compiler.errors import ERROR_FILE_ENV, ExitCode, VilmsError

# optional dependency → the extra that installs it
EXTRA_OF = {
    **dict.fromkeys(("torch", "transformers", "peft", "bitsandbytes", "accelerate", "safetensors", "tokenizers",
                     "numpy", "gguf", "matplotlib", "tqdm"), "train"),
    **dict.fromkeys(("httptools", "orjson", "uvloop", "dns"), "gateway"),
    "llama_cpp": "serve",
    "httpx": "serve",
    **dict.fromkeys(("boto3", "botocore", "s3transfer"), "store"),
    **dict.fromkeys(("presidio_analyzer", "phonenumbers", "stdnum", "detect_secrets"), "sanitize"),
}


# command → (module of vilms.cli, one-line help): a module is imported only when one of its
# commands runs (or `--help` lists them), so `vilms build` pays for none of the others
COMMANDS = {
    "init": ("project", "Write a commented starter vilms.yaml that builds."),
    "validate": ("project", "Check vilms.yaml and print every problem found."),
    "build": ("project", "Compile vilms.yaml into generated/ beside it."),
    "schema": ("project", "Print the vilms/v1 JSON Schema."),
    "explain": ("project", "Show the resolved plan of a deployment and its memory estimate."),
    "diff": ("project", "Show what `vilms build` would change in generated/, writing nothing."),
    "rollout": ("release", "Release a trained run of an adapter: edit release:, rebuild."),
    "rollback": ("release", "Set an adapter's release: back to the run before, and rebuild."),
    "apply": ("release", "Deploy generated/: docker compose, Helm, or the local runner."),
    "serve": ("serving", "Run the OpenAI-compatible gateway for a deployment."),
    "up": ("serving", "Start a local deployment: llama.cpp servers and the gateway, supervised."),
    "status": ("serving", "Show the processes of a local deployment and their health."),
    "down": ("serving", "Stop a local deployment (the gateway first: it drains)."),
    "restart": ("serving", "Restart processes of a local deployment (a failed one starts again)."),
    "logs": ("serving", "Print (or follow) the logs of a local deployment's processes."),
    "supervise": ("serving", ""),  # hidden: the supervisor `vilms up` starts
    "train": ("training", "Train a LoRA/QLoRA adapter from generated/training/."),
    "runs": ("training", "List the training runs: status, gate, released, started, config hash."),
    "approve": ("training", "Record a human decision on a run's evaluation gate."),
    "export": ("training", "Merge a run and export safetensors, GGUF and a Modelfile."),
    "data": ("training", "Check, sanitize and fingerprint datasets."),
    "demo": ("demo", "The whole loop on a tiny local model, in a folder of its own."),
}


class LazyGroup(click.Group):
    """The `vilms` group: each command's module is imported when that command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (_module, text) in COMMANDS.items() if text)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"vilms.cli.{COMMANDS[name][0]}")
        return next(c for c in module.COMMANDS if c.name == name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vilms", prog_name="vilms")
def cli() -> None:
    """Compile vilms.yaml into everything needed to fine-tune and serve LLMs."""


def _keep_error(text: str) -> None:
    target = os.environ.get(ERROR_FILE_ENV)
    if target:
        try:
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError:
            pass  # the error was printed; the copy is a convenience


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
        _keep_error(exc.render())
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
