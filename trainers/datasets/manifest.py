"""Dataset manifests: ``<dataset path>.manifest.json`` beside each JSONL file.

A manifest pins the content (sha256, bytes, rows), summarises token counts and records
provenance (source, collected/anonymised timestamps, licence, confidence). Refreshing a
manifest keeps provenance fields that are not given again.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilms.compiler.errors import DatasetError, Diagnostic

from ..atomic import write_json
from .validate import Dataset

MANIFEST_VERSION = 1
PROVENANCE_KEYS = ("source", "collected_at", "anonymised_at", "license", "confidence")

Counter = Callable[[str], int]


@dataclass(frozen=True)
class TokenStats:
    counter: str
    total: int
    min: int
    max: int
    mean: float
    p50: int
    p95: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "counter": self.counter,
            "total": self.total,
            "min": self.min,
            "max": self.max,
            "mean": round(self.mean, 3),
            "p50": self.p50,
            "p95": self.p95,
        }


def manifest_path(dataset_path: Path) -> Path:
    return dataset_path.with_name(dataset_path.name + ".manifest.json")


def row_text(row: dict[str, Any], fmt: str) -> str:
    """The text of a row, for counting (all message contents joined)."""
    if fmt == "chat":
        return "\n".join(m["content"] for m in row["messages"])
    if fmt == "completion":
        return row["prompt"] + row["completion"]
    return row["text"]


def whitespace_tokens(text: str) -> int:
    return len(text.split())


def token_stats(dataset: Dataset, counter: Counter = whitespace_tokens, counter_name: str = "whitespace") -> TokenStats:
    counts = sorted(counter(row_text(row, dataset.format)) for row in dataset.rows)
    p95 = counts[min(len(counts) - 1, int(round(0.95 * (len(counts) - 1))))]
    return TokenStats(
        counter=counter_name,
        total=sum(counts),
        min=counts[0],
        max=counts[-1],
        mean=statistics.fmean(counts),
        p50=int(statistics.median_low(counts)),
        p95=p95,
    )


def build_manifest(
    dataset: Dataset, name: str, display_path: str, provenance: dict[str, Any], stats: TokenStats | None = None
) -> dict[str, Any]:
    stats = stats or token_stats(dataset)
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": name,
        "path": display_path,
        "format": dataset.format,
        "sha256": dataset.sha256,
        "bytes": dataset.size_bytes,
        "rows": len(dataset.rows),
        "tokens": stats.as_dict(),
        "provenance": {key: provenance.get(key) for key in PROVENANCE_KEYS},
    }


def read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError([Diagnostic(str(path), 1, 1, "", f"unreadable manifest: {exc}")]) from None
    if not isinstance(data, dict):
        raise DatasetError([Diagnostic(str(path), 1, 1, "", "manifest must be a JSON object")])
    return data


def validate_provenance(provenance: dict[str, Any], where: str) -> None:
    diags: list[Diagnostic] = []
    confidence = provenance.get("confidence")
    if confidence is not None and not (isinstance(confidence, (int, float)) and 0 <= confidence <= 1):
        diags.append(
            Diagnostic(where, 0, 0, "provenance.confidence", f"must be a number in [0, 1], got {confidence!r}")
        )
    for key in ("collected_at", "anonymised_at"):
        value = provenance.get(key)
        if value is not None:
            from datetime import datetime

            try:
                datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                diags.append(Diagnostic(where, 0, 0, f"provenance.{key}", f"not an ISO-8601 timestamp: {value!r}"))
    if diags:
        raise DatasetError(diags)


def write_manifest(
    dataset: Dataset, name: str, display_path: str, provenance: dict[str, Any], stats: TokenStats | None = None
) -> Path:
    """Write (or refresh) the manifest; provenance not given is kept from the old manifest."""
    target = manifest_path(dataset.path)
    old = read_manifest(target) or {}
    merged = dict(old.get("provenance") or {})
    merged.update({k: v for k, v in provenance.items() if v is not None})
    validate_provenance(merged, str(target))
    write_json(target, build_manifest(dataset, name, display_path, merged, stats))
    return target
