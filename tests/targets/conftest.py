"""Fixtures of the target tests: every project compiled once into a temporary tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.projects import write_compiled


@pytest.fixture(scope="session")
def generated_tree(tmp_path_factory):
    """``generated_tree(project)`` → the project's generated/ folder on disk (written once)."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = write_compiled(name, tmp_path_factory.mktemp(name))
        return cache[name]

    return get
