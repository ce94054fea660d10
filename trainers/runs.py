"""Runs: ``artifacts/<run_id>/`` and its record ``run.json``.

A run id is ``<adapter>-<UTC time>-<random hex>``, unique across parallel trainers; the
run directory is created with ``mkdir(exist_ok=False)`` and every file in it is written
atomically. ``run.json`` records what the run was made from (config and dataset hashes,
base model source and revision, library versions, hardware) and its gate result and
human approvals. The compiler asks :func:`load_run` whether a run may be released.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from vilms.compiler.errors import ActionError

from .atomic import write_json

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*-\d{8}T\d{6}Z-[0-9a-f]{6}$")
GATE_STATUSES = ("passed", "failed", "needs_approval", "approved")
RELEASABLE = ("passed", "approved")
LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "safetensors",
    "tokenizers",
    "gguf",
    "llama_cpp_python",
    "numpy",
    "vilms",
)


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def artifacts_root(project_root: Path) -> Path:
    return project_root / "artifacts"


def run_dir(project_root: Path, run_id: str) -> Path:
    if not RUN_ID.match(run_id):
        raise ActionError(f"not a run id: {run_id!r}", hint="run ids look like support-v1-20261123T152000Z-1a2b3c")
    return artifacts_root(project_root) / run_id


def create_run_dir(project_root: Path, adapter: str) -> tuple[str, Path]:
    """A new, unique run directory (safe with parallel trainers)."""
    root = artifacts_root(project_root)
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        run_id = f"{adapter}-{stamp}-{secrets.token_hex(3)}"
        path = root / run_id
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return run_id, path
    raise ActionError(f"could not allocate a run directory under {root}")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def read_record(path: Path) -> dict[str, Any]:
    record_path = path / "run.json"
    if not record_path.is_file():
        raise ActionError(f"no run record at {record_path}", hint="is the run id right? see artifacts/")
    try:
        data = json.loads(record_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ActionError(f"unreadable run record {record_path}: {exc}") from None
    if not isinstance(data, dict):
        raise ActionError(f"unreadable run record {record_path}: not an object")
    return data


def write_record(path: Path, record: dict[str, Any]) -> None:
    write_json(path / "run.json", record)


def update_record(path: Path, **changes: Any) -> dict[str, Any]:
    record = read_record(path)
    record.update(changes)
    write_record(path, record)
    return record


def find_resumable(project_root: Path, adapter: str) -> Path | None:
    """The newest run of ``adapter`` that has not completed, if any."""
    root = artifacts_root(project_root)
    if not root.is_dir():
        return None
    candidates = []
    for path in root.iterdir():
        if not path.name.startswith(adapter + "-") or not RUN_ID.match(path.name) or not (path / "run.json").is_file():
            continue
        record = read_record(path)
        if record.get("adapter") == adapter and record.get("status") != "completed":
            candidates.append((record.get("created_at", ""), path.name, path))
    return max(candidates)[2] if candidates else None


@dataclass(frozen=True)
class RunStatus:
    """What the compiler needs to decide on a release."""

    run_id: str
    adapter: str
    status: str  # running | interrupted | failed | completed
    gate_status: str | None  # passed | failed | needs_approval | approved | None (no gate yet)

    @property
    def releasable(self) -> bool:
        return self.status == "completed" and self.gate_status in RELEASABLE


def load_run(project_root: Path, run_id: str) -> RunStatus:
    """The gate status of ``artifacts/<run_id>/`` (raises ActionError if there is no such run)."""
    record = read_record(run_dir(Path(project_root), run_id))
    gate = record.get("gate") or {}
    return RunStatus(
        run_id=run_id,
        adapter=str(record.get("adapter")),
        status=str(record.get("status")),
        gate_status=gate.get("status"),
    )


def current_user() -> str:
    user = os.environ.get("USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 — no passwd entry in some containers
        return "unknown"


def approve(project_root: Path, run_id: str, reason: str) -> dict[str, Any]:
    """Record a human decision that releases a run whose gate asked for approval."""
    if not reason.strip():
        raise ActionError("--reason must not be empty")
    path = run_dir(Path(project_root), run_id)
    record = read_record(path)
    gate = dict(record.get("gate") or {})
    status = gate.get("status")
    if record.get("status") != "completed" or status is None:
        raise ActionError(f"run {run_id} has not finished its evaluation (status {record.get('status')})")
    if status == "passed":
        raise ActionError(f"run {run_id} passed its gate; nothing to approve")
    if status == "approved":
        raise ActionError(f"run {run_id} is already approved")
    if status == "failed":
        raise ActionError(
            f"run {run_id} failed its gate and the gate's on_fail is reject",
            hint="set gate.on_fail: approval to allow a human override, or train again",
        )
    decision = {"who": current_user(), "reason": reason, "at": utc_now(), "from_status": status}
    gate["status"] = "approved"
    gate["approval"] = decision
    record["gate"] = gate
    record.setdefault("approvals", []).append(decision)
    write_record(path, record)
    return decision
