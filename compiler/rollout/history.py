"""The release history: ``.vilms/releases/<adapter>.jsonl``, one ReleaseHistoryEntry per line.

Every line is written and read through the contract
(:mod:`vilms.compiler.contracts.release_history`); a bad line is reported as
``.vilms/releases/<adapter>.jsonl:LINE:COL: path: message``. Lines written before the
history was a contract (no apiVersion) are read as that legacy shape, see
:func:`read_legacy_line`. Rollback replays the entries as a stack of rollouts still in
effect (:func:`rollback_target`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from vilms.compiler.clock import utc_now
from vilms.compiler.contracts.contract import API_VERSION
from vilms.compiler.contracts.release_history import RELEASE_HISTORY, ReleaseDigest, ReleaseHistoryEntry
from vilms.compiler.digest import sha256_file
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.compiler.jsonl_log import invalid, json_object, on_line, read_log
from vilms.compiler.layout import ADAPTER_WEIGHTS, RELEASES, RUN_ADAPTER, RUN_ADAPTER_GGUF, Layout
from vilms.compiler.load import parse


def shown(layout: Layout, adapter: str) -> str:
    """How messages name the adapter's history: ``.vilms/releases/<adapter>.jsonl``."""
    return layout.history(adapter).relative_to(layout.root).as_posix()


# --- reading


def read_history(layout: Layout, adapter: str) -> tuple[ReleaseHistoryEntry, ...]:
    """Every entry of the adapter's history, oldest first (none when there is no file)."""
    return read_log(layout.history(adapter), shown(layout, adapter), "release history", read_line)


def read_line(line: bytes, display: str, number: int) -> ReleaseHistoryEntry:
    """Line ``number`` of a history file, through the contract; problems located in the file."""
    data = json_object(line, display, number, RELEASE_HISTORY)
    try:
        if ("apiVersion" not in data and "kind" not in data) or "digest" not in data:
            return read_legacy_line(line, display)
        return RELEASE_HISTORY.parse(line, display)
    except InvalidInputError as exc:
        raise on_line(exc, number) from None


def read_legacy_line(line: bytes, display: str) -> ReleaseHistoryEntry:
    """A line written before the history was a contract: a JSON object with the keys ``at``,
    ``adapter``, ``from``, ``to``, ``action`` and no ``apiVersion`` or ``kind``.

    The history is committed and rollback needs all of it, so such a line is read, not
    refused: it is taken as the ReleaseHistoryEntry it would be today (the same keys plus
    apiVersion and kind) and checked by the contract like any other line, with problems
    located in the line as written. The file is never rewritten; new lines are whole entries.
    Lines written before ``digest`` existed (with or without apiVersion) are read with ``digest: null``.
    """
    try:
        doc = parse(line, file=Path(display), display_name=display)
    except InvalidInputError as exc:  # valid JSON but not valid here, e.g. a key given twice
        raise invalid(RELEASE_HISTORY, *(replace(d, hint=None) for d in exc.diagnostics)) from None
    current = {"apiVersion": API_VERSION, "kind": RELEASE_HISTORY.kind, "digest": None, **doc.data}
    return RELEASE_HISTORY.from_document(replace(doc, data=current))


# --- writing


def entry(adapter: str, before: str | None, after: str | None, action: str,
          digest: ReleaseDigest | None = None) -> ReleaseHistoryEntry:
    """The record of one change, made now."""
    return ReleaseHistoryEntry(at=utc_now(), adapter=adapter, from_=before, to=after, action=action, digest=digest)


def run_digest(layout: Layout, run_id: str | None) -> ReleaseDigest | None:
    """The sha256 of the run's adapter weights and GGUF, where the run is in artifacts/ here."""
    if run_id is None:
        return None
    found = []
    for path in (layout.run(run_id) / RUN_ADAPTER / ADAPTER_WEIGHTS, layout.run(run_id) / RUN_ADAPTER_GGUF):
        try:
            found.append(sha256_file(path) if path.is_file() else None)
        except OSError as exc:
            raise ActionError(f"cannot read {path.relative_to(layout.root)} to record its digest: {exc.strerror or exc}") from None
    return ReleaseDigest(*found) if any(found) else None


def open_history(layout: Layout, adapter: str) -> tuple[Path, BinaryIO]:
    """The adapter's history file, opened for appending: opened *before* anything changes, so
    a history that cannot be written refuses the change instead of leaving it unrecorded."""
    path = layout.history(adapter)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, path.open("ab+")
    except OSError as exc:
        raise ActionError(f"cannot write the release history {path}: {exc.strerror or exc}",
                          hint=f"{RELEASES}/ must be a writable folder beside vilms.yaml") from None


def history_line(record: ReleaseHistoryEntry) -> str:
    """``record`` as one JSON line, without its newline (appended by
    :func:`vilms.compiler.journal.append_line`, after a newline if the last line lacks one)."""
    return json.dumps(RELEASE_HISTORY.data(record), ensure_ascii=False)


# --- replaying


def rollback_target(history: tuple[ReleaseHistoryEntry, ...] | list[ReleaseHistoryEntry],
                    current: str | None) -> tuple[bool, str | None]:
    """What a rollback from ``current`` returns to: ``(found, release)``.

    The history replays as a stack of rollouts still in effect: a rollback removes the
    rollout it undid, so rolling back twice from r3 goes to r2, then r1 (not back to r3).
    The target is the ``from`` of the latest remaining rollout whose ``to`` is ``current``.
    """
    live: list[ReleaseHistoryEntry] = []
    for item in history:
        if item.action == "rollout":
            live.append(item)
            continue
        for i in range(len(live) - 1, -1, -1):
            if live[i].to == item.from_ and live[i].from_ == item.to:
                del live[i]
                break
    for item in reversed(live):
        if item.to == current:
            return True, item.from_
    return False, None
