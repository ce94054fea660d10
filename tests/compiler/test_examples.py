"""Golden trees: every example project's whole generated/ tree, one snapshot file per artefact,
so that a change to a generator reads as a plain diff in review."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from vilms.compiler.pipeline import compile_files

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.parent for p in (REPO / "examples").glob("*/vilms.yaml"))
PROJECTS = [*EXAMPLES, REPO]


class TextFile(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "txt"

    def serialize(self, data, **kwargs):  # noqa: ANN001, ARG002 - syrupy hook
        return str(data)


@functools.cache
def _tree(project: Path) -> dict[str, bytes]:
    return compile_files(project / "vilms.yaml")[2]


def _cases() -> list[tuple[str, str]]:
    cases = []
    for project in PROJECTS:
        name = "shipped" if project == REPO else project.name
        cases.extend((name, rel) for rel in _tree(project))
    return cases


CASES = _cases()


def test_every_example_is_covered():
    names = {p.name for p in EXAMPLES}
    assert {"jetson-edge", "cpu-laptop", "gpu-cluster", "mixed", "ray-cluster"} <= names


@pytest.mark.parametrize("example,rel", CASES, ids=[f"{e}--{r.replace('/', '--')}" for e, r in CASES])
def test_generated_artefact(example, rel, snapshot):
    project = REPO if example == "shipped" else REPO / "examples" / example
    assert _tree(project)[rel].decode("utf-8") == snapshot(extension_class=TextFile)
