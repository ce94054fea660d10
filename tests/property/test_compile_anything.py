"""Property-based: no vilms.yaml can crash the compiler.

Documents come from three sources: the vilms/v1 JSON Schema itself (hypothesis-jsonschema),
coherent projects whose references resolve, and those projects with a hostile value or key
planted anywhere (NaN, inf, huge or fractional numbers, control and bidi characters, escaping
paths, reserved names, wrong types, deep nesting). For every document: it builds, or it fails
with located diagnostics (``vilms.yaml:line:col``) and nothing else — never another exception.
When it builds, every generated contract file loads in its reader, and a second build from the
same bytes is byte-identical. At least 2,000 examples run in CI.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from tests.property.strategies import HOSTILE, paths, planted, project
from vilms.compiler.contracts.registry import contract_for
from vilms.compiler.errors import InvalidInputError
from vilms.compiler.load import parse
from vilms.compiler.pipeline import plan_document, render_files
from vilms.compiler.schema import schema

# examples per test (2,000 in all); VILMS_PROPERTY_SCALE=0.1 for a quick local run. Drawing from the
# whole vilms/v1 schema costs ~0.3 s an example (generation, not the build), so that test gets fewer.
SCALE = float(os.environ.get("VILMS_PROPERTY_SCALE", "1"))


def _settings(examples: int) -> settings:
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("project")
    (folder / "data").mkdir()
    (folder / "data" / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    return folder


def build_or_locate(raw: bytes, root: Path) -> dict[str, bytes] | None:
    """The files a build writes, or None when the document was refused with located diagnostics."""
    try:
        doc = parse(raw, file=root / "vilms.yaml", display_name="vilms.yaml")
        plan = plan_document(doc)
        return render_files(doc, plan)
    except InvalidInputError as exc:
        assert exc.diagnostics, "an invalid document names at least one problem"
        for diag in exc.diagnostics:
            assert diag.file == "vilms.yaml" and diag.line >= 1 and diag.column >= 1, diag
            assert diag.message and "Traceback" not in diag.message, diag
        return None


def check_build(raw: bytes, root: Path) -> bool:
    files = build_or_locate(raw, root)
    if files is None:
        return False
    for rel, data in files.items():
        contract = contract_for(rel)
        if contract is not None:
            contract.parse(data, f"generated/{rel}")  # raises on a writer/reader disagreement
    assert build_or_locate(raw, root) == files, "two builds of the same bytes differ"
    return True


def dump(doc: Any) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=4096).encode("utf-8")


@_settings(400)
@given(doc=from_schema(copy.deepcopy(schema())))  # a copy: from_schema rewrites the schema it is given
def test_schema_drawn_documents_build_or_fail_located(doc, root):
    check_build(dump(doc), root)


@_settings(800)
@given(doc=project())
def test_coherent_projects_build_or_fail_located(doc, root):
    check_build(dump(doc), root)


@_settings(800)
@given(doc=project(), data=st.data())
def test_hostile_values_and_keys_anywhere_fail_located(doc, data, root):
    path = data.draw(st.sampled_from([p for p in paths(doc) if p]))
    if data.draw(st.booleans()) or not isinstance(path[-1], str):
        mutated = planted(doc, path, data.draw(HOSTILE))
    else:
        key = data.draw(st.one_of(st.sampled_from(["training", "Chat", "\u202e", "\x00", "a" * 70, "manifest.json", "<<"]),
                                  st.text(max_size=12)))
        mutated = _renamed(doc, path, key)
    check_build(dump(mutated), root)


def _renamed(doc: dict[str, Any], path: tuple, key: str) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(doc)
    parent: Any = out
    for part in path[:-1]:
        parent = parent[part]
    parent[key] = parent.pop(path[-1])
    return out


def test_coherent_projects_do_build(root):
    """The coherent strategy is not vacuous: most of its documents build."""
    built = 0

    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(doc=project())
    def count(doc: dict[str, Any]) -> None:
        nonlocal built
        built += check_build(dump(doc), root)

    count()
    assert built >= 40
