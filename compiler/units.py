"""Sizes (``8GiB``) and parameter counts (``1.5B``) as numbers."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
_FACTORS = {
    "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}
GIB = 2**30


def parse_size(text: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(round(float(match.group(1)) * _FACTORS[match.group(2)]))


def parse_params(text: str) -> int:
    """``1.5B`` → 1_500_000_000; ``135M`` → 135_000_000."""
    number, unit = float(text[:-1]), text[-1]
    return int(round(number * (10**9 if unit == "B" else 10**6)))


def format_bytes(n: float) -> str:
    if abs(n) >= GIB:
        return f"{n / GIB:.2f} GiB"
    return f"{n / 2**20:.0f} MiB"
