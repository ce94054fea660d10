"""Finite numbers only: JSON Schema cannot refuse inf and NaN (every comparison with NaN is
false). Readers never see them (the loader refuses ``.nan`` and ``.inf``); every writer's tree
is checked with :func:`non_finite` before it is written (:meth:`Contract.data`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

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
