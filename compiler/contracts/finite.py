"""Finite numbers only: YAML can spell ``.inf`` and ``.nan`` and JSON Schema cannot refuse
them (every comparison with NaN is false), so contracts whose numbers must be finite check
the tree they loaded (and writers the tree they write) with :func:`non_finite`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

from vilms.compiler.reporter import Reporter

from .codec import is_name, key_of

Path_ = tuple[str | int, ...]


def non_finite(value: Any, path: Path_ = ()) -> Iterator[tuple[Path_, float]]:
    """(key path, value) of every float in a dataclass tree that is inf or NaN, in field order."""
    if isinstance(value, float):
        if not math.isfinite(value):
            yield path, value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if not is_name(f):
                yield from non_finite(getattr(value, f.name), path + (key_of(f),))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from non_finite(item, path + (key,))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from non_finite(item, path + (index,))


def report_non_finite(value: Any, report: Reporter) -> None:
    """A located error for every inf or NaN in ``value`` (a contract's ``check`` calls this)."""
    for path, number in non_finite(value):
        report.error(path, f"must be a finite number, not {number}")
