"""`vilms init`: a commented starter vilms.yaml (shipped in the package) that builds.

``--project NAME`` is filled in with ruamel.yaml's round trip, which keeps every comment and
the layout of the starter (a test holds the result to the starter with one line changed).
"""

from __future__ import annotations

import io
import re
from importlib import resources
from pathlib import Path

from vilms.compiler.errors import ActionError, UsageError
from vilms.compiler.schema import schema


def starter_text(project: str | None = None) -> str:
    """The starter, with ``project:`` set to ``project`` when given."""
    text = resources.files("vilms.templates").joinpath("starter", "vilms.yaml").read_text(encoding="utf-8")
    if project is None:
        return text
    _check_project_name(project)
    from ruamel.yaml import YAML  # only `vilms init --project` edits YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1_000_000  # never fold a line
    data = yaml.load(text)
    data["project"] = project
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _check_project_name(project: str) -> None:
    """Refuse a name vilms.yaml's schema would refuse, before anything is written."""
    rule = schema()["properties"]["project"]
    label = schema()["$defs"][rule["$ref"].rsplit("/", 1)[-1]]
    if not re.fullmatch(label["pattern"], project):
        raise UsageError(f"--project {project!r} is not a project name: {label['description']}",
                         hint="for example --project acme")


def write_starter(file: Path, *, force: bool = False, project: str | None = None) -> None:
    text = starter_text(project)
    if file.exists() and not force:
        raise ActionError(f"{file} already exists", hint="pass --force to overwrite it, or -f to write elsewhere")
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(file)
