"""The `release:` edit over a corpus of vilms.yaml variants (tests/support/yaml_variants.py: flow,
multi-line flow, quoting, comments, CRLF, BOM, block scalars, 100 kB lines, unicode): a
rollout changes exactly one line of the file, and a rollback restores it byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.yaml_variants import ADAPTER, R1, ROLLBACK_WRITES_NULL, changed_lines, one_line_changed, variants
from vilms.compiler.load import parse
from vilms.compiler.rollout import rollback, rollout, set_release

VARIANTS = variants()
IDS = [name for name, _ in VARIANTS]


def data_of(text: str) -> dict:
    return parse(text.encode("utf-8"), file=Path("vilms.yaml"), display_name="vilms.yaml").data


def test_the_corpus_covers_what_the_edit_must_keep():
    assert len(VARIANTS) >= 57
    texts = [text for _name, text in VARIANTS]
    assert any("\r\n" in t for t in texts) and any(t.startswith("\ufeff") for t in texts)
    assert any("x" * 100_000 in t for t in texts) and any("🚀" in t for t in texts)
    assert any("  support-v1: {\n" in t for t in texts) and any("system: |" in t for t in texts) and any(": >-" in t for t in texts)
    assert any(not t.endswith("\n") for t in texts)


@pytest.mark.parametrize("text", [text for _name, text in VARIANTS], ids=IDS)
def test_set_release_changes_exactly_one_line(text):
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    new = bom + set_release(text[len(bom):], ADAPTER, R1).text
    assert one_line_changed(text, new), changed_lines(text, new)
    expected = data_of(text)
    expected["adapters"][ADAPTER]["release"] = R1
    assert data_of(new) == expected


@pytest.mark.parametrize("name,text", VARIANTS, ids=IDS)
def test_rollout_changes_one_line_and_rollback_restores_the_file(tmp_path, name, text):
    path = tmp_path / "vilms.yaml"
    original = text.encode("utf-8")
    path.write_bytes(original)
    change = rollout(path, ADAPTER, R1)
    assert change.changed and (tmp_path / "generated" / "manifest.json").is_file()
    after = path.read_bytes().decode("utf-8")
    assert one_line_changed(text, after), changed_lines(text, after)
    back = rollback(path, ADAPTER)
    assert back.after == change.before
    restored = path.read_bytes()
    if name.split("/")[0] in ROLLBACK_WRITES_NULL:  # `~`, an empty value or no release: at all → `release: null`
        assert restored.decode("utf-8") == after.replace(R1, "null", 1)
        assert one_line_changed(text, restored.decode("utf-8"))
    else:
        assert restored == original


@pytest.mark.parametrize("name", ["multiline-flow/bom-crlf", "missing/long-comment-line", "plain-null/unicode"])
def test_the_command_diffs_one_line(tmp_path, vilms, name):
    text = dict(VARIANTS)[name]
    path = tmp_path / "vilms.yaml"
    path.write_bytes(text.encode("utf-8"))
    result = vilms("rollout", ADAPTER, R1, "-f", str(path))
    assert result.code == 0, result.err
    assert one_line_changed(text, path.read_bytes().decode("utf-8"))
    assert vilms("rollback", ADAPTER, "-f", str(path)).code == 0
    assert vilms("build", "--check", "-f", str(path)).code == 0
