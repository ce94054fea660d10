"""Commands on the project file: init, validate, build, schema, explain, diff."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vilms.compiler.errors import ExitCode
from vilms.compiler.layout import GENERATED

from .exits import exit_with
from .options import FILE, output_format
from .paths import shown


@click.command()
@FILE
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--project", metavar="NAME", help="The project's name (lower-case letters, digits and '-'); default my-project.")
def init(file: Path, force: bool, project: str | None) -> None:
    """Write a commented starter vilms.yaml that builds, and the .gitignore and .gitattributes
    lines it needs (appended to existing files, once)."""
    from vilms.compiler.git_files import write_git_files
    from vilms.compiler.starter import write_starter

    write_starter(file, force=force, project=project)
    changed = write_git_files(file.parent)
    also = f" (and {', '.join(p.name for p in changed)})" if changed else ""
    click.echo(f"wrote {file}{also}; next: vilms build -f {file}")


@click.command()
@FILE
@output_format("text", "json")
def validate(file: Path, fmt: str) -> None:
    """Check vilms.yaml and print every problem found."""
    from vilms.compiler.pipeline import problems

    error = problems(file)
    if fmt == "json":
        report = {"valid": error is None, "diagnostics": [d.as_dict() for d in error.diagnostics] if error else [],
                  "hint": error.hint if error else None}
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        if error:
            exit_with(ExitCode.FAILED)
        return
    if error:
        raise error
    click.echo(f"{file}: valid")


@click.command()
@FILE
@click.option("--check", is_flag=True, help=f"Exit 4 and name each file when {GENERATED}/ is stale or was edited (content, type or mode).")
def build(file: Path, check: bool) -> None:
    """Compile vilms.yaml into generated/ beside it."""
    from vilms.compiler.pipeline import build as run_build

    result = run_build(file, check=check)
    if result.recovered:
        click.echo(f"warning: {result.recovered}", err=True)
    if check:
        click.echo(f"{GENERATED}/ is up to date ({len(result.files)} files)")
    elif result.changed:
        click.echo(f"wrote {len(result.files)} files to {shown(result.out_dir)} ({len(result.changed)} changed)")
    else:
        click.echo(f"{shown(result.out_dir)} is up to date ({len(result.files)} files)")


@click.command()
def schema() -> None:
    """Print the vilms/v1 JSON Schema."""
    from vilms.compiler.schema import schema_text

    click.echo(schema_text(), nl=False)


@click.command()
@click.argument("deployment")
@FILE
def explain(deployment: str, file: Path) -> None:
    """Show the resolved plan of a deployment and its memory estimate."""
    from vilms.compiler.explain import explain_deployment
    from vilms.compiler.pipeline import compile_plan

    _doc, plan = compile_plan(file, fit=False)
    click.echo(explain_deployment(plan, deployment))


@click.command()
@FILE
@click.option("--against", metavar="REF", help=f"Compare with {GENERATED}/ as committed at this git ref, not with {GENERATED}/ on disk.")
@click.option("--exit-code", is_flag=True, help="Exit 0 when nothing would change, 4 when something would (1 on error).")
@output_format("text", "markdown", "json")
@click.option("--max-lines", type=click.IntRange(min=0), default=200, show_default=True, help="Diff lines shown per file (0: all).")
@click.option("--max-chars", type=click.IntRange(min=1000), default=60_000, show_default=True,
              help="--format markdown: the comment's length cap (GitHub's limit is 65,536); whole file diffs that do not fit are left out.")
def diff(file: Path, against: str | None, exit_code: bool, fmt: str, max_lines: int, max_chars: int) -> None:
    """Show what `vilms build` would change in generated/, writing nothing."""
    from vilms.compiler.diff import RENDERERS, diff_project, render_markdown

    report = diff_project(file, against=against)
    if fmt == "markdown":
        click.echo(render_markdown(report, max_lines=max_lines, max_chars=max_chars), nl=False)
    else:
        click.echo(RENDERERS[fmt](report, max_lines=max_lines), nl=False)
    if exit_code and report.changes:
        exit_with(ExitCode.DRIFT)


COMMANDS = (init, validate, build, schema, explain, diff)
