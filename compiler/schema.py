"""The vilms/v1 JSON Schema (draft 2020-12), shipped inside the package."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

SCHEMA_FILE = "vilms-v1.schema.json"


def schema_text() -> str:
    return resources.files("vilms.compiler").joinpath("schema", SCHEMA_FILE).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(schema_text())
