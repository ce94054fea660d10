"""The release history: ``.vilms/releases/<adapter>.jsonl``, one line per change.

Rollback replays it as a stack of rollouts still in effect (:func:`rollback_target`).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from vilms.compiler.errors import ActionError

HISTORY_DIR = Path(".vilms") / "releases"
ACTIONS = ("rollout", "rollback")


def history_path(project_root: Path, adapter: str) -> Path:
    return project_root / HISTORY_DIR / f"{adapter}.jsonl"


def read_history(project_root: Path, adapter: str) -> list[dict[str, Any]]:
    path = history_path(project_root, adapter)
    if not path.is_file():
        return []
    shown = (HISTORY_DIR / path.name).as_posix()
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise ActionError(f"{shown}:{number}: not valid JSON ({exc.msg})", hint="fix or remove that line") from None
        if not isinstance(entry, dict) or entry.get("action") not in ACTIONS or not {"from", "to"} <= set(entry):
            raise ActionError(f"{shown}:{number}: not a release record",
                              hint='each line is {"at": ..., "adapter": ..., "from": ..., "to": ..., "action": "rollout"|"rollback"}')
        entries.append(entry)
    return entries


def open_history(project_root: Path, adapter: str) -> tuple[Path, BinaryIO]:
    """The adapter's history file, opened for appending: opened *before* anything changes, so
    a history that cannot be written refuses the change instead of leaving it unrecorded."""
    path = history_path(project_root, adapter)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, path.open("ab+")
    except OSError as exc:
        raise ActionError(f"cannot write the release history {path}: {exc.strerror or exc}",
                          hint=f"{HISTORY_DIR}/ must be a writable folder beside vilms.yaml") from None


def append_history(path: Path, fh: BinaryIO, adapter: str, before: str | None, after: str | None,
                   action: str) -> None:
    entry = {"at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "adapter": adapter,
             "from": before, "to": after, "action": action}
    lead = b""
    if path.stat().st_size:
        fh.seek(-1, os.SEEK_END)
        lead = b"" if fh.read(1) == b"\n" else b"\n"
    fh.write(lead + json.dumps(entry).encode("utf-8") + b"\n")
    fh.flush()


def rollback_target(history: list[dict[str, Any]], current: str | None) -> tuple[bool, str | None]:
    """What a rollback from ``current`` returns to: ``(found, release)``.

    The history replays as a stack of rollouts still in effect: a rollback removes the
    rollout it undid, so rolling back twice from r3 goes to r2, then r1 (not back to r3).
    The target is the ``from`` of the latest remaining rollout whose ``to`` is ``current``.
    """
    live: list[dict[str, Any]] = []
    for entry in history:
        if entry["action"] == "rollout":
            live.append(entry)
            continue
        for i in range(len(live) - 1, -1, -1):
            if live[i]["to"] == entry["from"] and live[i]["from"] == entry["to"]:
                del live[i]
                break
    for entry in reversed(live):
        if entry["to"] == current:
            return True, entry["from"]
    return False, None
