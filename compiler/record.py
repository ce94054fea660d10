"""``@record``: a frozen dataclass that shares its methods instead of compiling them per class.

On Python 3.11, ``@dataclass(frozen=True)`` writes six methods for every class
(``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``, ``__delattr__``),
each by compiling source text: about 0.4 ms a class. The plan and the contracts on the
compile path have some 36 classes, so a cold `vilms build` spent ~14 ms just creating them
(bench/compile.py). A record compiles only its ``__init__``; the other five are the shared
functions below, with the dataclass's behaviour: fields are set once, by ``__init__``, and
never again (:class:`dataclasses.FrozenInstanceError`); instances compare and hash by their
fields and print as ``Name(field=value, ...)``; :func:`dataclasses.fields`, ``replace`` and
``asdict`` work as on any dataclass.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")
_FIELDS = "__record_fields__"


def record(cls: type[T]) -> type[T]:
    cls = dataclasses.dataclass(eq=False, repr=False)(cls)
    setattr(cls, _FIELDS, tuple(f.name for f in dataclasses.fields(cls)))
    cls.__eq__ = _eq  # type: ignore[method-assign,assignment]
    cls.__hash__ = _hash  # type: ignore[method-assign,assignment]
    cls.__repr__ = _repr  # type: ignore[method-assign,assignment]
    cls.__setattr__ = _setattr  # type: ignore[method-assign,assignment]
    cls.__delattr__ = _delattr  # type: ignore[method-assign,assignment]
    return cls


def _values(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in getattr(self, _FIELDS))


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash(_values(self))


def _repr(self: Any) -> str:
    fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in getattr(self, _FIELDS))
    return f"{self.__class__.__qualname__}({fields})"


def _setattr(self: Any, name: str, value: Any) -> None:
    if name in getattr(self, _FIELDS) and name not in self.__dict__:  # __init__, setting each field once
        object.__setattr__(self, name, value)
        return
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
