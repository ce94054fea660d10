"""`vilms approve RUN_ID --reason`: a human decision that releases a run whose gate asked for one."""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import replace

from vilms.compiler.clock import utc_now
from vilms.compiler.contracts.run_record import Approval
from vilms.compiler.errors import ActionError
from vilms.compiler.layout import Layout

from . import runs


def current_user() -> str:
    user = os.environ.get("USER")
    if user:
        return user
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # noqa: BLE001 — no passwd entry in some containers
        return "unknown"


def approve(layout: Layout, run_id: str, reason: str) -> Approval:
    """Record who approved ``run_id``, why and when; its gate status becomes ``approved``."""
    if not reason.strip():
        raise ActionError("--reason must not be empty")
    path = runs.run_dir(layout, run_id)
    record = runs.load_record(path)
    if record.gate is None:
        raise ActionError(f"run {run_id} has not finished its evaluation (status {record.status})")
    status = record.gate.status
    if status == "passed":
        raise ActionError(f"run {run_id} passed its gate; nothing to approve")
    if status == "approved":
        raise ActionError(f"run {run_id} is already approved")
    if status == "failed":
        raise ActionError(
            f"run {run_id} failed its gate and the gate's on_fail is reject",
            hint="set gate.on_fail: approval to allow a human override, or train again",
        )
    decision = Approval(who=current_user(), reason=reason, at=utc_now(), from_status=status)
    runs.save_record(path, replace(record, gate=replace(record.gate, status="approved"),
                                   approvals=(*record.approvals, decision)))
    from .tracking import tag_run

    if tag_run(path, layout.root, {"vilms.gate": "approved", "vilms.approver": decision.who}) is False:
        print(f"run {run_id}: approved; its MLflow run could not be tagged (server unreachable or its URI unset)",
              file=sys.stderr)
    return decision
