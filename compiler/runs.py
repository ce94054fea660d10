"""What the compiler needs to know about a training run: may it be released?

Reads ``artifacts/<run_id>/run.json`` through its contract
(:mod:`vilms.compiler.contracts.run_record`); the trainer writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from vilms.compiler.contracts.run_record import RUN_RECORD
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.compiler.layout import Layout
from vilms.compiler.run_ids import EXAMPLE, RUN_ID


@dataclass(frozen=True)
class ReleaseStatus:
    run_id: str
    adapter: str
    status: str  # running | interrupted | failed | abandoned | completed
    gate_status: str | None  # passed | failed | needs_approval | approved; None: not evaluated yet
    releasable: bool  # completed, and the gate passed or a human approved it


def release_status(project: Layout | Path, run_id: str) -> ReleaseStatus:
    """The release status of ``artifacts/<run_id>/`` in ``project`` (a Layout or its root folder).

    Raises ActionError when ``run_id`` is not a run id, the run has no record, or the record
    is not a valid run record (the message names the first problem and where it is).
    """
    layout = project if isinstance(project, Layout) else Layout(Path(project))
    if not RUN_ID.match(run_id):
        raise ActionError(f"not a run id: {run_id!r}", hint=f"run ids look like {EXAMPLE} (see artifacts/)")
    path = layout.run_record(run_id)
    if not path.is_file():
        raise ActionError(f"no run record at {path}", hint="is the run id right? see artifacts/")
    try:
        record = RUN_RECORD.load(path)
    except InvalidInputError as exc:
        first, more = replace(exc.diagnostics[0], hint=None).render(), len(exc.diagnostics) - 1
        raise ActionError(first + (f" (and {more} more)" if more else ""), hint=exc.hint) from None
    if record.run_id != run_id:
        raise ActionError(f"{path} records run {record.run_id!r}, not {run_id!r}",
                          hint="a run folder was renamed or copied; release the run by the id its record holds")
    return ReleaseStatus(run_id=run_id, adapter=record.adapter, status=record.status,
                         gate_status=record.gate_status, releasable=record.releasable)


def release_hint(run_id: str, status: str, gate_status: str | None) -> str:
    """What a user can do about a run that may not be released: the one wording of
    `vilms train` (gate exit), `vilms validate` and `vilms rollout`. A gate that failed
    with on_fail reject cannot be approved, so its hint never names `vilms approve`."""
    if status != "completed":
        return "release a completed run whose gate passed (`vilms runs` lists them)"
    if gate_status == "needs_approval":
        return (f"review the run (metrics.json, the gate's reasons), then record a decision with "
                f"`vilms approve {run_id} --reason ...`, or release a run whose gate passed")
    if gate_status == "failed":
        return ("the gate's on_fail is reject, so no approval can release this run: improve the data or the "
                "training settings and train again, or release a run whose gate passed")
    return "release a run whose gate passed"
