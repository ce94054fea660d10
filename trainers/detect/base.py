"""What every detector produces: spans of a string with a kind and a priority."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


class Candidate(NamedTuple):
    priority: int  # higher wins on overlap
    start: int
    end: int
    kind: str


class Layer(Protocol):
    def __call__(self, text: str) -> Iterator[Candidate]: ...


@dataclass(frozen=True)
class RegexDetector:
    """A regular expression, optionally checked by ``accept``; ``group`` is the span redacted."""

    kind: str
    pattern: re.Pattern[str]
    accept: Callable[[str], bool] | None = None
    group: int = 0
    priority: int = 0

    def __call__(self, text: str) -> Iterator[Candidate]:
        for match in self.pattern.finditer(text):
            start, end = match.span(self.group)
            if end <= start:
                continue
            if self.accept is not None and not self.accept(text[start:end]):
                continue
            yield Candidate(self.priority, start, end, self.kind)


def resolve(candidates: list[Candidate]) -> list[Finding]:
    """The non-overlapping findings (higher priority, then longer, then earlier wins)."""
    candidates.sort(key=lambda c: (-c.priority, c.start - c.end, c.start))
    taken: list[Finding] = []
    for c in candidates:
        if all(c.end <= f.start or c.start >= f.end for f in taken):
            taken.append(Finding(c.kind, c.start, c.end))
    return sorted(taken, key=lambda f: f.start)
