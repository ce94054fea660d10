"""``.vilms/approvals/<adapter>.jsonl`` (kind ApprovalEntry): one `vilms approve` per line.

Committed beside the release history (``.vilms/releases/``), so a GitOps review shows who
approved which run, why, and how that identity was known. Written by `vilms approve`
(:mod:`vilms.trainers.approval`), one whole contract document per line, appended under a
lock; read through :func:`vilms.compiler.approvals.read_approvals`, which locates problems as
``.vilms/approvals/<adapter>.jsonl:LINE:COL``. The run's own record keeps a copy of the
decision (``artifacts/<run_id>/run.json``: approvals).
"""

from __future__ import annotations

from vilms.compiler.record import record
from vilms.compiler.reporter import Reporter
from vilms.compiler.run_ids import adapter_of

from .contract import Contract

IDENTITY_SOURCES = ("VILMS_APPROVER", "git", "USER")  # where `who` came from, in the order they are tried


@record
class ApprovalEntry:
    at: str  # UTC, ISO-8601 (vilms.compiler.clock.utc_now)
    adapter: str
    run_id: str
    who: str  # VILMS_APPROVER, else git's "user.name <user.email>", else $USER
    identity: str  # which of IDENTITY_SOURCES gave `who`
    reason: str
    from_status: str  # the gate status approved (needs_approval)
    config_sha256: str  # of the training config the approved run trained with


def _check(entry: ApprovalEntry, report: Reporter) -> None:
    if adapter_of(entry.run_id) != entry.adapter:
        report.error(("run_id",), f"run {entry.run_id!r} is not a run of adapter {entry.adapter!r}")


APPROVAL_LOG = Contract(
    kind="ApprovalEntry",
    root=ApprovalEntry,
    schema_file="approval-entry.schema.json",
    format="json",
    remedy="restore it from git or remove the bad line (`vilms approve` writes every line)",
    check=_check,
)
