"""Frozen dataclass trees ⇄ plain data (dicts, lists, str, int, float, bool, None).

The writer of a contract file builds its dataclass and serialises it with :func:`to_data`;
the reader validates plain data against the contract's JSON Schema first, then builds the
dataclass with :func:`from_data`, which therefore only converts (it never defaults or
guesses). A field is written under its own name unless ``field(metadata={KEY: "name"})``
names the key (``from`` is a Python keyword). A field marked ``metadata={NAME: True}`` is
not written at all: it holds the key its object is stored under in a mapping (an alias's
name in ``aliases:``), so the reader never sees the two disagree.

About 80 lines of our own rather than cattrs or dacite: the compile path's dependencies
are fixed (jinja2, pyyaml, ruamel.yaml, jsonschema, click), see docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Any, Union

KEY = "vilms.key"  # field metadata: the key this field is written under
NAME = "vilms.name"  # field metadata: the field is the mapping key its object is stored under


def key_of(field: dataclasses.Field) -> str:
    return field.metadata.get(KEY, field.name)


def is_name(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get(NAME))


def name_field() -> Any:
    """A dataclass field holding the key its object is stored under (never written)."""
    return dataclasses.field(metadata={NAME: True})


def to_data(value: Any) -> Any:
    """A dataclass tree as plain data: dataclasses and mappings → dicts, tuples → lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {key_of(f): to_data(getattr(value, f.name)) for f in dataclasses.fields(value) if not is_name(f)}
    if isinstance(value, Mapping):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_data(v) for v in value]
    return value


def from_data(kind: Any, data: Any, name: str | None = None) -> Any:
    """``data`` (already valid against the contract's schema) as an instance of ``kind``;
    ``name`` is the mapping key ``data`` was stored under, if any."""
    if kind is Any:
        return _frozen(data)
    if dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        values = {}
        for f in dataclasses.fields(kind):
            if is_name(f):
                if name is None:
                    raise TypeError(f"{kind.__name__}.{f.name} is a name field outside a mapping")
                values[f.name] = name
            else:
                values[f.name] = from_data(hints[f.name], data[key_of(f)])
        return kind(**values)
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (Union, types.UnionType):
        if data is None:
            if type(None) not in args:
                raise TypeError(f"null for {kind}")
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"ambiguous union {kind}")
        return from_data(options[0], data)
    if origin is tuple:
        return tuple(from_data(args[0], item) for item in data)
    if origin in (Mapping, dict):
        return MappingProxyType({k: from_data(args[1], v, k) for k, v in data.items()})
    if kind is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise TypeError(f"expected a number, got {data!r}")
        return float(data)
    if kind in (int, str, bool):
        if type(data) is not kind:
            raise TypeError(f"expected {kind.__name__}, got {data!r}")
        return data
    if kind is type(None) and data is None:
        return None
    raise TypeError(f"cannot convert to {kind!r}")


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


@cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)
