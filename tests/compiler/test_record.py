"""`@record` behaves as `@dataclass(frozen=True)` does: immutable, equal and hashed by fields,
printed the same way, and usable by dataclasses' own functions."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from vilms.compiler.record import record


@record
class Point:
    """A point."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


@record
class Other:
    """Same fields, another class."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Reference:
    """What a frozen dataclass does, to compare with."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


def test_fields_cannot_be_assigned_or_deleted():
    p = Point(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.z = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.y
    assert (p.x, p.y) == (1, 2)


def test_equality_hash_and_repr_are_the_dataclass_ones():
    assert Point(1, 2, ("a",)) == Point(1, 2, ("a",)) and Point(1, 2) != Point(1, 3)
    assert Point(1) != Other(1) and Point(1) != (1, 0, ())
    assert hash(Point(1, 2)) == hash(Point(1, 2)) and len({Point(1), Point(1), Point(2)}) == 2
    assert repr(Point(1, 2, ("a",))) == repr(Reference(1, 2, ("a",))).replace("Reference", "Point")


def test_dataclass_functions_copy_and_pickle_work():
    p = Point(1, 2)
    assert dataclasses.is_dataclass(p) and [f.name for f in dataclasses.fields(p)] == ["x", "y", "tags"]
    assert dataclasses.replace(p, y=5) == Point(1, 5) and dataclasses.asdict(p) == {"x": 1, "y": 2, "tags": ()}
    assert copy.deepcopy(p) == p and pickle.loads(pickle.dumps(p)) == p
