"""Every Python package folder ships in the wheel under the vilms namespace."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"cli": "vilms.cli", "compiler": "vilms.compiler", "runtime": "vilms.runtime", "trainers": "vilms.trainers",
           "templates": "vilms.templates"}
ENTRY = {"vilms": "cli/entry"}  # only __main__.py, for `python -m vilms`


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder, package in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([package, *rel.parts]))
    found |= set(ENTRY)
    assert found == listed, f"missing: {sorted(found - listed)}, stale: {sorted(listed - found)}"
    assert config["package-dir"] == {**ENTRY, **{package: folder for folder, package in FOLDERS.items()}}


def test_the_entry_folder_holds_only_main():
    """`vilms` stays a namespace package: the entry folder has a __main__.py and no __init__.py."""
    assert sorted(p.name for p in (REPO / ENTRY["vilms"]).iterdir() if p.name != "__pycache__") == ["__main__.py"]


def test_every_image_copies_every_package_folder():
    """`pip install .` in an image needs every folder pyproject maps a package to (`cli/` holds `python -m vilms`)."""
    import re

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {folder.split("/")[0] for folder in config["package-dir"].values()}
    for dockerfile in sorted(REPO.glob("runtime/*/Dockerfile")):
        copied = {m.group(1) for m in re.finditer(r"^COPY\s+(\S+)\s", dockerfile.read_text(), re.MULTILINE)}
        assert roots <= copied, f"{dockerfile.relative_to(REPO)} does not copy {sorted(roots - copied)}"
