"""The `vilms` command line: the one boundary that turns errors into messages and exit codes.

Exit codes: 0 success, 1 invalid input or failed action, 2 wrong usage (click's own),
130 interrupted. Commands that need heavy dependencies (train, serve, ...) are imported
only when invoked, so the compile path never imports torch.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from vilms.compiler.errors import InvalidInputError, UsageError, VilmsError

FILE_OPTION = click.option(
    "-f", "--file", "file", type=click.Path(path_type=Path, dir_okay=False), default=Path("vilms.yaml"),
    show_default=True, help="The vilms.yaml to read; generated/ is written beside it.",
)

# optional dependency → the extra that installs it
EXTRA_OF = {
    **dict.fromkeys(("torch", "transformers", "peft", "bitsandbytes", "accelerate", "safetensors", "tokenizers",
                     "numpy", "gguf", "matplotlib", "tqdm"), "train"),
    **dict.fromkeys(("httptools", "orjson", "uvloop"), "gateway"),
    "llama_cpp": "serve",
}

# name → (module, attribute, one-line help): loaded only when the command runs
LAZY_COMMANDS = {
    "serve": ("vilms.runtime.gateway.command", "serve", "Run the OpenAI-compatible gateway for a deployment."),
    "up": ("vilms.runtime.local.commands", "up", "Start a local deployment: llama.cpp servers + gateway, supervised."),
    "status": ("vilms.runtime.local.commands", "status", "Show the processes of a local deployment and their health."),
    "down": ("vilms.runtime.local.commands", "down", "Stop a local deployment (gateway first, it drains)."),
    "train": ("vilms.trainers.commands", "train", "Train a LoRA/QLoRA adapter from generated/training/."),
    "approve": ("vilms.trainers.commands", "approve", "Record a human decision on a run's evaluation gate."),
    "export": ("vilms.trainers.commands", "export", "Merge a run and export HF safetensors, GGUF and a Modelfile."),
    "data": ("vilms.trainers.commands", "data", "Check, sanitize and fingerprint datasets."),
    "apply": ("vilms.runtime.apply", "apply", "Deploy generated/: docker compose, helm upgrade, or the local runner."),
    "demo": ("vilms.runtime.demo", "demo", "The end-to-end loop on a tiny local model, in a folder of its own."),
}


class LazyGroup(click.Group):
    """A group whose heavy commands are imported only when one of them runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None or name not in LAZY_COMMANDS:
            return command
        module_name, attr, _help = LAZY_COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise VilmsError(f"`vilms {name}` is not available here: {exc.name or exc} is not installed",
                             hint="install the extra it needs: pip install 'vilms[train]' or 'vilms[serve]'") from None
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS:
                rows.append((name, LAZY_COMMANDS[name][2]))
            else:
                command = super().get_command(ctx, name)
                if command is not None and not command.hidden:
                    rows.append((name, command.get_short_help_str(formatter.width - 6 - max(len(n) for n in self.list_commands(ctx)))))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vilms", prog_name="vilms")
def cli() -> None:
    """Compile vilms.yaml into everything needed to fine-tune and serve LLMs."""


@cli.command()
@FILE_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def validate(file: Path, fmt: str) -> None:
    """Check vilms.yaml and print every problem found."""
    from vilms.compiler.pipeline import diagnostics

    found = diagnostics(file)
    if fmt == "json":
        click.echo(json.dumps({"valid": not found, "diagnostics": [d.as_dict() for d in found]}, indent=2, sort_keys=True))
        if found:
            sys.exit(1)
        return
    if found:
        raise InvalidInputError(found)
    click.echo(f"{file}: valid")


@cli.command()
@FILE_OPTION
@click.option("--check", is_flag=True, help="Exit 1 and name each file when generated/ is stale or was edited.")
def build(file: Path, check: bool) -> None:
    """Compile vilms.yaml into generated/ beside it."""
    from vilms.compiler.pipeline import OUTPUT_DIR
    from vilms.compiler.pipeline import build as run_build

    result = run_build(file, check=check)
    where = _shown(result.out_dir)
    if check:
        click.echo(f"{OUTPUT_DIR}/ is up to date ({len(result.files)} files)")
    elif result.changed:
        click.echo(f"wrote {len(result.files)} files to {where} ({len(result.changed)} changed)")
    else:
        click.echo(f"{where} is up to date ({len(result.files)} files)")


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


@cli.command()
def schema() -> None:
    """Print the vilms/v1 JSON Schema."""
    from vilms.compiler.schema import schema_text

    click.echo(schema_text(), nl=False)


@cli.command()
@click.option("-f", "--file", "file", type=click.Path(path_type=Path, dir_okay=False), default=Path("vilms.yaml"), show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(file: Path, force: bool) -> None:
    """Write a commented starter vilms.yaml that builds."""
    from vilms.compiler.starter import write_starter

    write_starter(file, force=force)
    click.echo(f"wrote {file}; next: vilms build -f {file}")


@cli.command()
@click.argument("deployment")
@FILE_OPTION
def explain(deployment: str, file: Path) -> None:
    """Show the resolved plan of a deployment."""
    from vilms.compiler.explain import explain_deployment
    from vilms.compiler.pipeline import compile_plan

    _doc, plan = compile_plan(file, fit=False)
    click.echo(explain_deployment(plan, deployment))


@cli.command()
@FILE_OPTION
@click.option("--against", metavar="REF", help="Compare with generated/ as committed at this git ref, not with generated/ on disk.")
@click.option("--exit-code", is_flag=True, help="Exit 0 when nothing would change, 2 when something would (1 on error).")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@click.option("--max-lines", type=click.IntRange(min=0), default=200, show_default=True, help="Diff lines shown per file (0: all).")
def diff(file: Path, against: str | None, exit_code: bool, fmt: str, max_lines: int) -> None:
    """Show what `vilms build` would change in generated/, writing nothing."""
    from vilms.compiler.diff import RENDERERS, diff_project

    report = diff_project(file, against=against)
    click.echo(RENDERERS[fmt](report, max_lines=max_lines), nl=False)
    if exit_code and report.changes:
        sys.exit(2)


APPLY_OPTION = click.option("--apply", "apply_", is_flag=True,
                            help="Then deploy every deployment that serves the adapter (as `vilms apply`).")
YES_OPTION = click.option("--yes", "-y", is_flag=True, help="With --apply: do not ask for confirmation.")


@cli.command()
@click.argument("adapter")
@click.argument("run_id")
@FILE_OPTION
@APPLY_OPTION
@YES_OPTION
def rollout(adapter: str, run_id: str, file: Path, apply_: bool, yes: bool) -> None:
    """Release RUN_ID for ADAPTER: edit its release: in vilms.yaml and rebuild generated/."""
    from vilms.compiler.rollout import rollout as run_rollout

    _can_confirm(apply_, yes)
    _release(run_rollout(file, adapter, run_id), file, apply_, yes)


@cli.command()
@click.argument("adapter")
@FILE_OPTION
@APPLY_OPTION
@YES_OPTION
def rollback(adapter: str, file: Path, apply_: bool, yes: bool) -> None:
    """Set ADAPTER's release: back to the run before the current rollout, and rebuild."""
    from vilms.compiler.rollout import rollback as run_rollback

    _can_confirm(apply_, yes)
    _release(run_rollback(file, adapter), file, apply_, yes)


def _can_confirm(apply_: bool, yes: bool) -> None:
    """Refuse before editing anything when --apply could not ask for its confirmation."""
    if apply_ and not yes and not sys.stdin.isatty():
        raise UsageError("--apply changes running systems and there is no terminal to confirm on",
                         hint="pass --yes as well, or apply later with `vilms apply`")


def _release(change: Any, file: Path, apply_: bool, yes: bool) -> None:
    from vilms.compiler.rollout import describe

    for warning in change.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(describe(change))
    if apply_:
        deployments = sorted({dep for _alias, deps in change.serving for dep in deps})
        if not deployments:
            click.echo("no deployment serves this adapter: nothing to apply")
            return
        from vilms.runtime.apply import apply_deployments

        apply_deployments(file, deployments, yes=yes)


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="vilms", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except VilmsError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None or os.environ.get("VILMS_DEBUG"):
            raise
        click.echo(f"this command needs {exc.name}, which is not installed\n  hint: pip install 'vilms[{extra}]'", err=True)
        sys.exit(1)
    except Exception as exc:  # a bug in vilms, not bad input: short message, details on demand
        if os.environ.get("VILMS_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc}\n  hint: this is a bug in vilms; rerun with VILMS_DEBUG=1 for details and report it", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
