"""Request bodies: JSON objects, bounded in nesting as well as size (the server bounds the size).

orjson parses up to 1,024 levels but serialises at most 254, and the proxy re-serialises every
body: without a limit here, a body nested 254–1,023 levels deep would fail only on its way
out, as a 500. Real requests nest a handful of levels (a JSON schema in ``tools`` or
``response_format`` perhaps 10–20), so anything deeper than ``MAX_JSON_DEPTH`` is refused
with 400 before any endpoint looks at it.

The check runs on the bytes orjson has just accepted as valid JSON, in a few C-speed passes,
never a Python loop over the values. Nesting cannot exceed the number of ``{`` and ``[``
bytes: a body with at most ``MAX_JSON_DEPTH`` of them (an ordinary chat) passes after two
``bytes.count``. Otherwise the body is reduced to its brackets (escapes removed,
strings dropped, everything else deleted by one ``bytes.translate``) and innermost ``[]``
pairs are removed level by level; what is left after ``MAX_JSON_DEPTH`` passes is too
deep. ``bench/json_depth.py`` measures it; docs/gateway.md quotes the numbers.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .apierrors import ApiError

MAX_JSON_DEPTH = 64  # containers, the body itself included: {"a": [1]} is 2 deep


def parse_json(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object nested at most ``MAX_JSON_DEPTH`` deep, else :class:`ApiError` 400."""
    try:
        body = orjson.loads(raw)  # ~6x faster than json; refuses NaN and lone surrogates
    except ValueError as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    if too_deep(raw, MAX_JSON_DEPTH):
        raise ApiError(400, f"The request body is nested deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json")
    return body


_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')
_STRING = re.compile(rb'"[^"]*"')


def too_deep(raw: bytes, limit: int) -> bool:
    """Whether ``raw``, valid JSON, nests containers more than ``limit`` deep."""
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    if b"\\" in raw:  # escapes: a backslash pair, then an escaped quote, so that every quote left delimits
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = raw.translate(_BRACKETS, _NOT_STRUCTURE)  # quotes and brackets only; {} become []
    skeleton = skeleton.replace(b'""', b"")  # empty strings, and the seams between adjacent strings
    if b'"' in skeleton:  # strings that hold brackets
        skeleton = _STRING.sub(b"", skeleton)
    for _ in range(limit):
        if not skeleton:
            return False
        inner = skeleton.replace(b"[]", b"")  # one level: every empty container
        if len(inner) == len(skeleton):
            return True  # unbalanced: cannot happen after orjson accepted it
        skeleton = inner
    return bool(skeleton)

