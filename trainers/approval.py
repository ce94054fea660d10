"""`vilms approve RUN_ID --reason`: a human decision that releases a run whose gate asked for one.

The decision is appended to ``.vilms/approvals/<adapter>.jsonl`` (committed: a GitOps review
sees who approved what) and copied into the run's record. Who approved: ``VILMS_APPROVER``,
else git's ``user.name``/``user.email`` in the project, else ``$USER``; the log says which.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from vilms.compiler.approvals import line_of, shown
from vilms.compiler.clock import utc_now
from vilms.compiler.contracts.approval_log import ApprovalEntry
from vilms.compiler.contracts.run_record import Approval
from vilms.compiler.errors import ActionError
from vilms.compiler.layout import Layout

from . import run_locks, runs

try:
    import fcntl
except ImportError:  # Windows: appends of one small write are not interleaved there either
    fcntl = None  # type: ignore[assignment]

APPROVER_ENV = "VILMS_APPROVER"
GIT_TIMEOUT_S = 5.0
LOCK_TIMEOUT_S = 30.0  # a trainer writing the run's last record, or another approval, ends well within it


def current_user() -> str:
    user = os.environ.get("USER")
    if user:
        return user
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # noqa: BLE001 — no passwd entry in some containers
        return "unknown"


def _git_config(root: Path, key: str) -> str:
    try:
        done = subprocess.run(["git", "config", "--get", key], cwd=root, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def identity(root: Path) -> tuple[str, str]:
    """``(who, source)``: VILMS_APPROVER; else git's "user.name <user.email>" (either alone when only
    one is set) as git sees it in ``root``; else $USER (the login name)."""
    explicit = os.environ.get(APPROVER_ENV, "").strip()
    if explicit:
        return explicit, "VILMS_APPROVER"
    name, email = _git_config(root, "user.name"), _git_config(root, "user.email")
    if name or email:
        return (f"{name} <{email}>" if name and email else name or email), "git"
    return current_user(), "USER"


def append_approval(layout: Layout, entry: ApprovalEntry) -> Path:
    """Append ``entry`` to its adapter's log: one write of one whole line under an exclusive lock
    (two `vilms approve` at once never interleave or lose a line), then fsync."""
    path = layout.approval_log(entry.adapter)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ActionError(f"cannot write the approval log {shown(layout, entry.adapter)}: {exc.strerror or exc}",
                          hint=".vilms/ must be a writable folder beside vilms.yaml") from None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        lead = b""
        if size:  # a last line without its newline (edited by hand) must not swallow ours
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                lead = b"" if fh.read(1) == b"\n" else b"\n"
        os.write(fd, lead + line_of(entry))
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def approve(layout: Layout, run_id: str, reason: str) -> tuple[Approval, ApprovalEntry]:
    """Record who approved ``run_id``, why and when (in the approval log, then in the run's record);
    its gate status becomes ``approved``."""
    if not reason.strip():
        raise ActionError("--reason must not be empty")
    path = runs.run_dir(layout, run_id)
    with run_locks.holding(layout, run_id, LOCK_TIMEOUT_S):  # two approvals at once: the second sees the first
        return _approve(layout, path, run_id, reason)


def _approve(layout: Layout, path: Path, run_id: str, reason: str) -> tuple[Approval, ApprovalEntry]:
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
            f"run {run_id} failed its gate and the gate's on_fail is reject: it cannot be approved",
            hint="improve the data or the training settings and train again, or release a run whose gate passed",
        )
    who, source = identity(layout.root)
    at = utc_now()
    entry = ApprovalEntry(at=at, adapter=record.adapter, run_id=run_id, who=who, identity=source, reason=reason,
                          from_status=status, config_sha256=record.config_sha256)
    append_approval(layout, entry)  # first: the committed log never misses a decision a record holds
    decision = Approval(who=who, reason=reason, at=at, from_status=status)
    runs.save_record(path, replace(record, gate=replace(record.gate, status="approved"),
                                   approvals=(*record.approvals, decision)))
    from .tracking import tag_run

    if tag_run(path, layout.root, {"vilms.gate": "approved", "vilms.approver": decision.who}) is False:
        print(f"run {run_id}: approved; its MLflow run could not be tagged (server unreachable or its URI unset)",
              file=sys.stderr)
    return decision, entry
