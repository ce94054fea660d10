"""`typo_of` (compiler/suggest.py), which decides when a rollout's run id only resembles a
local run and is refused without --force: exactly the strings one typo away (optimal string
alignment distance 1: one character replaced, dropped, added, or two neighbours swapped)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vilms.compiler.suggest import typo_of

WORDS = st.text(alphabet="ab01-T", max_size=8)


def osa(a: str, b: str) -> int:
    """The optimal string alignment distance, by the textbook table."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


@given(WORDS, WORDS)
def test_one_typo_away_means_distance_one(a, b):
    assert (typo_of(a, [b]) == b) == (osa(a, b) == 1)


def test_distinct_runs_of_one_adapter_are_not_typos():
    assert typo_of("support-v1-20261121T091500Z-1a2b3c", ["support-v1-20261122T101500Z-9f8e7d"]) is None
    assert typo_of("support-v1-20261121T091500Z-1a2b3c", ["support-v1-20261121T091500Z-1a2b3d"]) == "support-v1-20261121T091500Z-1a2b3d"
    assert typo_of("support-v1-20261121T091500Z-1a2b3c", ["support-v1-20261121T091500Z-1a2bc3"]) == "support-v1-20261121T091500Z-1a2bc3"
