"""The resolved training config as MLflow params: one flat ``a.b.c → text`` map."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_VALUE = 6000  # MLflow's limit on a param value (characters)
MAX_KEY = 250  # MLflow's limit on a param key


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings become dotted keys; lists are JSON; ``None`` is ``null``. Values longer than
    MLflow keeps are cut and end in ``…``. Deterministic: the same config gives the same map."""
    out: dict[str, str] = {}
    for key in sorted(config):
        value = config[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
            continue
        out[name[:MAX_KEY]] = _text(value)
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or value is None or isinstance(value, list | tuple | Mapping):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"
