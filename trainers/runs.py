"""Runs: the folder ``artifacts/<run_id>/`` and its record ``run.json``.

Run ids come from :mod:`vilms.compiler.run_ids` (unique across parallel trainers: the
folder is also created exclusively). The record is read only through its contract
(:mod:`vilms.compiler.contracts.run_record`) and always written whole and atomically:
a writer builds a new record (``dataclasses.replace``) and saves it.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from vilms.compiler.contracts.finite import non_finite
from vilms.compiler.contracts.run_record import RUN_RECORD, RunRecord
from vilms.compiler.errors import ActionError, VilmsError
from vilms.compiler.layout import RUN_RECORD as RECORD_FILE
from vilms.compiler.layout import Layout
from vilms.compiler.run_ids import EXAMPLE, RUN_ID, adapter_of, new_run_id

from .atomic import write_bytes


def run_dir(layout: Layout, run_id: str) -> Path:
    """The folder of ``run_id`` (which must be a run id: it becomes a path)."""
    if not RUN_ID.match(run_id):
        raise ActionError(f"not a run id: {run_id!r}", hint=f"run ids look like {EXAMPLE} (see artifacts/)")
    return layout.run(run_id)


def create_run(layout: Layout, adapter: str) -> tuple[str, Path]:
    """A new run id of ``adapter`` and its folder, created exclusively (safe with parallel trainers)."""
    layout.artifacts.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        run_id = new_run_id(adapter)
        path = layout.run(run_id)
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return run_id, path
    raise ActionError(f"could not allocate a run directory under {layout.artifacts}")


def load_record(path: Path) -> RunRecord:
    """The record of the run in folder ``path``."""
    file = path / RECORD_FILE
    if not file.is_file():
        raise ActionError(f"no run record at {file}", hint="is the run id right? see artifacts/")
    return RUN_RECORD.load(file)


def read_record(layout: Layout, run_id: str) -> RunRecord:
    return load_record(run_dir(layout, run_id))


def save_record(path: Path, record: RunRecord) -> None:
    """Write ``record`` as ``path/run.json``, atomically (readers see the old or the new record)."""
    bad = [".".join(map(str, p)) for p, _ in non_finite(record)]
    if bad:  # JSON has no inf or NaN: the record builders write them as null (see run_record.finite)
        raise AssertionError(f"run record of {record.run_id} holds non-finite numbers at {', '.join(bad)}")
    write_bytes(path / RECORD_FILE, RUN_RECORD.dump(record))


UNFINISHED = ("running", "interrupted", "failed")  # statuses a run may be resumed from


def records_of(layout: Layout, adapter: str | None = None,
               unreadable: Callable[[str, VilmsError], None] | None = None) -> list[RunRecord]:
    """Every run record under artifacts/ (of ``adapter``, when given), newest first. A record that
    cannot be read raises, or, with ``unreadable``, is reported to it (run id, error) and left out."""
    if not layout.artifacts.is_dir():
        return []
    found = []
    for path in layout.artifacts.iterdir():
        owner = adapter_of(path.name)
        if owner is not None and (adapter is None or owner == adapter) and (path / RECORD_FILE).is_file():
            try:
                record = load_record(path)
            except VilmsError as exc:
                if unreadable is None:
                    raise
                unreadable(path.name, exc)
                continue
            if adapter is None or record.adapter == adapter:
                found.append(record)
    return sorted(found, key=lambda r: (r.created_at, r.run_id), reverse=True)


def unfinished(layout: Layout, adapter: str) -> list[RunRecord]:
    """The runs of ``adapter`` that did not complete and were not abandoned, newest first. A run whose
    record cannot be read (edited by hand, another ViLMS version) is never resumed and never blocks a
    start: it is named on stderr and left as it is."""

    def skip(run_id: str, exc: VilmsError) -> None:
        first = exc.render().splitlines()[0]
        print(f"{adapter}: run {run_id} is left alone: its record cannot be read ({first})", file=sys.stderr)

    return [r for r in records_of(layout, adapter, skip) if r.status in UNFINISHED]


def leftovers(run_dir: Path) -> list[Path]:
    """Temp files and folders of writes that never finished in ``run_dir`` (:mod:`.atomic` names them
    ``.tmp-*``, ``.old-*`` and ``.*.tmp``; export's writers ``.*.tmp``)."""
    found = []
    for path in run_dir.rglob(".*"):
        name = path.name
        if name.startswith((".tmp-", ".old-")) or (name.endswith(".tmp") and len(name) > 5):
            found.append(path)
    return sorted(found)


def remove_leftovers(run_dir: Path) -> int:
    """Remove :func:`leftovers` of ``run_dir``: only call it while holding the run's lock
    (:mod:`.run_locks`), so no writer of this run can be alive. Returns how many were removed."""
    removed = 0
    for path in leftovers(run_dir):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += not path.exists()
    return removed
