"""docs/architecture.md draws the layers from the real import graph: the table between its
`imports` markers must be what grimp (import-linter's graph) finds now."""

from __future__ import annotations

import re
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"
LAYERS = ("vilms.cli", "vilms.runtime", "vilms.trainers", "vilms.compiler")
MARKERS = re.compile(r"<!-- imports:start -->\n(.*?)<!-- imports:end -->", re.S)


def _unit(module: str) -> str:
    """A module's unit in the table: the package below its layer (vilms.compiler.contracts)."""
    return ".".join(module.split(".")[:3])


def import_table() -> str:
    graph = grimp.build_graph(*LAYERS, cache_dir=None)
    edges: dict[str, set[str]] = {layer: set() for layer in LAYERS[:-1]}
    for module in graph.modules:
        layer = ".".join(module.split(".")[:2])
        if layer not in edges:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            if not imported.startswith(layer + ".") and imported != layer:
                edges[layer].add(_unit(imported))
    rows = ["| layer | imports from the layers below |", "|---|---|"]
    for layer, units in edges.items():
        shown = ", ".join(f"`{u.removeprefix('vilms.')}`" for u in sorted(units))
        rows.append(f"| `{layer.removeprefix('vilms.')}` | {shown} |")
    return "\n".join(rows) + "\n"


def test_the_layer_table_is_the_real_import_graph():
    found = MARKERS.search(DOC.read_text(encoding="utf-8"))
    assert found, "docs/architecture.md needs an <!-- imports:start --> ... <!-- imports:end --> table"
    expected = import_table()
    assert found.group(1) == expected, "replace the table in docs/architecture.md with:\n" + expected
