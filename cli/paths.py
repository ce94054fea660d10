"""How commands show paths: relative to the working directory when below it, else absolute."""

from __future__ import annotations

from pathlib import Path


def shown(path: Path | str | None) -> str:
    if not path:
        return "-"
    cwd = Path.cwd().resolve()
    if cwd.parent == cwd:  # relative to / reads like a typo
        return str(path)
    try:
        return str(Path(path).resolve().relative_to(cwd)) or "."
    except ValueError:
        return str(path)
