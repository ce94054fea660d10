"""`vilms init`: a commented starter vilms.yaml (shipped in the package) that builds."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from vilms.compiler.errors import ActionError


def starter_text() -> str:
    return resources.files("vilms.templates").joinpath("starter", "vilms.yaml").read_text(encoding="utf-8")


def write_starter(file: Path, *, force: bool = False) -> None:
    if file.exists() and not force:
        raise ActionError(f"{file} already exists", hint="pass --force to overwrite it, or -f to write elsewhere")
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(starter_text(), encoding="utf-8")
    tmp.replace(file)
