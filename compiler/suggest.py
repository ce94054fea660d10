"""Did-you-mean suggestions for misspelled keys and names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    match = closest(word, candidates)
    return f" (did you mean {match!r}?)" if match else ""


def typo_of(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` is one typo away from (one character wrong, missing or extra, or
    two neighbours swapped), if any. Stricter than :func:`closest`: run ids of one adapter all
    look alike to difflib, but only a mistyped one is a single edit away."""
    for candidate in sorted(set(candidates)):
        if candidate != word and _one_edit(word, candidate):
            return candidate
    return None


def _one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1:] == b[i + 1:] or (a[i + 2:] == b[i + 2:] and a[i:i + 2] == b[i:i + 2][::-1])
    return a[i:] == b[i + 1:] if len(a) < len(b) else a[i + 1:] == b[i:]
