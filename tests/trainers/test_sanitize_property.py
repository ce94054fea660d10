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
