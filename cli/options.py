"""Options and arguments shared by several commands: each defined once, here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from vilms.compiler.layout import GENERATED

PROJECT_FILE = "vilms.yaml"

_FILE_ARGS: dict[str, Any] = {
    "type": click.Path(path_type=Path, dir_okay=False), "default": Path(PROJECT_FILE), "show_default": True,
    "help": f"The vilms.yaml to read; {GENERATED}/, artifacts/ and .vilms/ lie beside it."}
FILE = click.option("-f", "--file", "file", **_FILE_ARGS)
FILE_LONG_ONLY = click.option("--file", "file", **_FILE_ARGS)  # `vilms logs`, where -f is --follow (as tail -f)
DEPLOYMENT = click.argument("deployment", required=False)
YES = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
OLLAMA_URL = click.option(
    "--ollama-url", envvar="VILMS_OLLAMA_URL", default=None, metavar="URL",
    help="The Ollama server whose derived models apply creates (compose + ollama; default: the port "
         "`docker compose port` reports).",
)
SKIP_REGISTRY = click.option(
    "--skip-registry", is_flag=True,
    help="Leave the MLflow Model Registry as it is (the tracking server is down): the release changes "
         "vilms.yaml only, and the command says how to bring the registry's alias in line later.",
)
APPLY = click.option("--apply", "apply_", is_flag=True,
                     help="Then deploy every deployment that serves the adapter (as `vilms apply`).")


def output_format(*choices: str) -> Callable[[Any], Any]:
    """``--format`` with ``choices`` (the first is the default)."""
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=choices[0], show_default=True)


def dataset_format() -> Callable[[Any], Any]:
    return click.option("--format", "fmt", type=click.Choice(["chat", "completion", "text"]), default="chat",
                        show_default=True, help="How each JSONL row is shaped.")
