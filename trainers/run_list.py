"""`vilms runs [ADAPTER]`: every run under artifacts/, newest first, with what a user needs to
clean up: its status (and whether a trainer holds it now), its gate, whether vilms.yaml
releases it, when it started and the hash of the training config it trains."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vilms.compiler.errors import VilmsError
from vilms.compiler.layout import Layout
from vilms.compiler.load import load
from vilms.compiler.run_ids import adapter_of

from . import run_locks, runs


@dataclass(frozen=True)
class RunRow:
    run_id: str
    adapter: str
    status: str  # the record's: running | interrupted | failed | abandoned | completed; unreadable: no valid record
    live: bool  # a trainer holds the run's lock now (a `running` run that is not live was killed)
    gate: str | None  # passed | failed | needs_approval | approved; None: not evaluated
    released: bool  # vilms.yaml's adapters.<adapter>.release names this run
    started: str  # created_at, UTC
    config_sha256: str

    def data(self) -> dict[str, Any]:
        return asdict(self)


def releases(file: Path) -> dict[str, str]:
    """adapter → the run vilms.yaml releases (adapters without a string release are left out)."""
    adapters = load(file).data.get("adapters")
    if not isinstance(adapters, dict):
        return {}
    return {name: spec["release"] for name, spec in adapters.items()
            if isinstance(spec, dict) and isinstance(spec.get("release"), str)}


def list_runs(file: Path, adapter: str | None = None) -> list[RunRow]:
    """The runs of the project of ``file`` (of ``adapter``, when given), newest first."""
    layout = Layout.of(file)
    released = releases(file)
    broken: list[RunRow] = []

    def unreadable(run_id: str, _exc: VilmsError) -> None:  # listed, so it can be found and cleaned up
        owner = adapter_of(run_id) or ""
        broken.append(RunRow(run_id=run_id, adapter=owner, status="unreadable", live=run_locks.is_live(layout, run_id),
                             gate=None, released=released.get(owner) == run_id, started="", config_sha256=""))

    rows = [
        RunRow(run_id=r.run_id, adapter=r.adapter, status=r.status, live=run_locks.is_live(layout, r.run_id),
               gate=r.gate_status, released=released.get(r.adapter) == r.run_id, started=r.created_at,
               config_sha256=r.config_sha256)
        for r in runs.records_of(layout, adapter, unreadable)
    ]
    return rows + sorted(broken, key=lambda r: r.run_id, reverse=True)


HEADER = ("RUN", "STATUS", "GATE", "RELEASED", "STARTED", "CONFIG")


def table(rows: list[RunRow]) -> str:
    """The rows as an aligned text table (a killed run that still says running shows ``running (no trainer)``)."""
    cells = [HEADER] + [
        (r.run_id, r.status if r.live or r.status != "running" else "running (no trainer)", r.gate or "-",
         "yes" if r.released else "-", r.started or "-", r.config_sha256[:12] or "-")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)
