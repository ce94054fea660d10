"""The loader: YAML 1.2 core scalars, positions, bounded expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from vilms.compiler.errors import InvalidInputError
from vilms.compiler.load import parse


def doc(text: str):
    return parse(text.encode(), file=Path("/x/vilms.yaml"), display_name="vilms.yaml")


def test_yaml_12_core_scalars():
    data = doc("a: yes\nb: on\nc: no\nd: 2024-01-01\ne: 0o17\nf: 0x1F\ng: 1.5e3\nh: ~\ni: True\nj: 010\nk: -.5\n").data
    assert data == {"a": "yes", "b": "on", "c": "no", "d": "2024-01-01", "e": 15, "f": 31, "g": 1500.0,
                    "h": None, "i": True, "j": 10, "k": -0.5}


def test_integers_up_to_64_bits_are_read():
    data = doc("a: 9223372036854775807\nb: -9223372036854775807\nc: 0x7fffffffffffffff\nd: 0o777777777777777777777\ne: 000000000000000000000000000000042\n").data
    assert data == {"a": 2**63 - 1, "b": -(2**63 - 1), "c": 2**63 - 1, "d": 2**63 - 1, "e": 42}


def test_positions_of_keys_and_values():
    d = doc("models:\n  m1: {source: 'hf:a/b', context: 8}\n")
    assert d.key_positions[("models", "m1")] == (2, 3)
    assert d.value_positions[("models", "m1", "context")] == (2, 35)
    assert d.locate(("models", "m1", "missing", "deeper")) == (2, 7)


def test_aliases_are_expanded_within_budget():
    d = doc("base: &b {kind: cpu}\nother: *b\n")
    assert d.data["other"] == {"kind": "cpu"}


@pytest.mark.parametrize("text,fragment", [
    ("a: !!python/name:os.system x\n", "unsupported YAML tag"),
    ("a: !custom x\n", "unsupported YAML tag"),
    ("base: &b {x: 1}\nother:\n  <<: *b\n", "merge keys (<<) are not supported"),
    ("a: 1\n? [x]\n: 2\n", "mapping keys must be strings"),
    ("a: \"bell\x07\"\n", "control character U+0007"),
])
def test_rejected_constructs(text, fragment):
    with pytest.raises(InvalidInputError) as exc:
        doc(text)
    assert fragment in exc.value.render()
