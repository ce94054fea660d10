"""Property: whatever surrounds a planted item and wherever it sits (a value, a key, a nested
list), its raw text never reaches the sanitised output or the audit log."""

from __future__ import annotations

import json
import random
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vilms.trainers.sanitize import sanitize_file

from . import sanitize_corpus as corpus

# items recognisable on their own (not only after a keyword)
STANDALONE = [k for k in corpus.STRUCTURED if k not in corpus.CONTEXTUAL]
WORDS = st.text(alphabet=string.ascii_letters + " ,;!?", max_size=40)


@st.composite
def planted_rows(draw: st.DrawFn) -> tuple[str, dict]:
    kind = draw(st.sampled_from(STANDALONE))
    make, _ = corpus.KINDS[kind]
    value = make(random.Random(draw(st.integers(0, 2**32))))
    text = f"{draw(WORDS)} {value} {draw(WORDS)}"
    where = draw(st.sampled_from(["value", "key", "list", "deep-key"]))
    row = {
        "value": {"text": text},
        "key": {"meta": {text: 1}},
        "list": {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": [text]}]},
        "deep-key": {"a": [{"b": {value: {"c": text}}}]},
    }[where]
    return value, row


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted_rows())
def test_no_raw_value_reaches_output_or_audit(item: tuple[str, dict]) -> None:
    value, row = item
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        source, out, audit = tmp / "in.jsonl", tmp / "out.jsonl", tmp / "audit.jsonl"
        source.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
        sanitize_file(source, out, audit)
        for written in (out.read_text(encoding="utf-8"), audit.read_text(encoding="utf-8")):
            assert value not in written
            assert json.dumps(value, ensure_ascii=False)[1:-1] not in written


JSON_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30) | st.sampled_from(
    ["jane@example.com", "+49 30 12345678", "4111 1111 1111 1111", "10.0.0.1", "Hi Anna,", "password: hunter2hunter2"]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=12,
)


def _shape(value: object) -> object:
    """The structure without the strings: what sanitising must keep."""
    if isinstance(value, dict):
        return sorted((_shape(v) for v in value.values()), key=repr)
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return "str" if isinstance(value, str) else value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(JSON_TEXT, JSON_VALUES, max_size=5), min_size=1, max_size=4))
def test_any_json_rows_keep_their_shape_and_count(rows: list[dict]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        source, out, audit = tmp / "in.jsonl", tmp / "out.jsonl", tmp / "audit.jsonl"
        source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        report = sanitize_file(source, out, audit)
        # split on \n only: str.splitlines() also splits at U+0085 and U+2028 inside strings
        cleaned = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n")[:-1]]
        assert report.rows == len(cleaned) == len(rows)
        assert [_shape(r) for r in cleaned] == [_shape(r) for r in rows]
        assert [len(r) for r in cleaned] == [len(r) for r in rows]  # no key lost to a redaction collision
        for entry in map(json.loads, audit.read_text(encoding="utf-8").split("\n")[:-1]):
            assert 1 <= entry["line"] <= len(rows) and entry["span"][1] - entry["span"][0] == entry["length"]
