"""Expansion of the short forms vilms.yaml allows."""

from __future__ import annotations

from typing import Any


def alias_entry(value: Any) -> dict[str, Any]:
    """``chat: qwen2.5-1.5b`` is short for ``chat: {model: qwen2.5-1.5b}``."""
    return {"model": value} if isinstance(value, str) else dict(value)


def served_aliases(data: dict[str, Any], deployment: dict[str, Any]) -> list[str]:
    """The aliases a deployment serves: its ``aliases:`` list, or every alias (sorted)."""
    if "aliases" in deployment:
        return list(deployment["aliases"])
    return sorted(data.get("aliases", {}))
