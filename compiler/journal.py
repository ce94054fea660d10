"""Crash safety of a release: ``.vilms/release.journal.json``, the intent of a change in progress.

A rollout or rollback writes three things: ``generated/``, ``vilms.yaml`` and one history
line. Before the first of them it writes this journal (temp file, fsync, rename), and it
removes the journal after the last. Every command that takes the project lock first
recovers a journal left behind: whoever wrote it held the lock, so it is dead.

- vilms.yaml holds the new text: roll forward, rebuild ``generated/`` from it and put the
  history line in (the history is cut back to its size before the change, then the line is
  appended: a missing, partial or complete line all end as one whole line).
- vilms.yaml holds the old text: roll back, rebuild ``generated/`` from it; the history is
  cut back to its size before the change (its line is only written after vilms.yaml).
- anything else (edited since): rebuild ``generated/`` from what is there; history untouched.

Temp files of dead writers beside vilms.yaml (``.vilms.yaml.<pid>-*.tmp``) and of the journal
are removed too; ``generated/``'s temp folders are :func:`vilms.compiler.write.remove_leftovers`'.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from vilms.compiler.errors import ActionError
from vilms.compiler.layout import JOURNAL, Layout
from vilms.compiler.write import process_running


@dataclass(frozen=True)
class Intent:
    pid: int
    action: str  # rollout | rollback
    adapter: str
    file: str  # vilms.yaml, relative to the project
    before_sha256: str
    after_sha256: str
    history: str  # .vilms/releases/<adapter>.jsonl, relative to the project
    history_size: int  # its size before the change
    line: str  # the history line the change appends (JSON, no newline)


def begin(layout: Layout, intent: Intent) -> None:
    """Write the journal durably before the first change."""
    path = layout.journal
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    data = json.dumps(asdict(intent), ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"
    try:
        with open(temp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
        _sync_dir(path.parent)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise ActionError(f"cannot write {JOURNAL}: {exc.strerror or exc}; nothing was changed",
                          hint=f"{layout.root / '.vilms'} must be a writable folder") from None


def finish(layout: Layout) -> None:
    """The change is complete: remove the journal."""
    layout.journal.unlink(missing_ok=True)
    _sync_dir(layout.journal.parent)


def append_line(path: Path, size: int, line: str) -> None:
    """The history at ``path`` cut back to ``size`` bytes, then ``line`` appended as one whole
    line (after a newline when the file's last line lacks one), synced to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+") as fh:
        fh.truncate(size)
        lead = b""
        if size:
            fh.seek(size - 1)
            lead = b"" if fh.read(1) == b"\n" else b"\n"
        fh.seek(0, os.SEEK_END)
        fh.write(lead + line.encode("utf-8") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def pending(layout: Layout) -> bool:
    return layout.journal.exists()


def recover(layout: Layout, rebuild: Callable[[Path], None]) -> str | None:
    """Finish or undo the change a dead command left (call with the project lock held); what
    was done, as one line, or None when there was nothing to recover. ``rebuild(file)`` makes
    ``generated/`` what ``file`` compiles to."""
    remove_stale_temps(layout)
    path = layout.journal
    if not path.exists():
        return None
    try:
        intent = Intent(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise ActionError(f"{JOURNAL} (an interrupted release) cannot be read: {exc}",
                          hint="check vilms.yaml and .vilms/releases/ with `git diff`, then remove the journal and run `vilms build`") from None
    file = layout.root / intent.file
    history = layout.root / intent.history
    try:
        current = _sha256(file)
    except OSError as exc:
        raise ActionError(f"cannot read {intent.file} to recover an interrupted {intent.action}: {exc.strerror or exc}") from None
    what = f"recovered an interrupted {intent.action} of {intent.adapter} (pid {intent.pid})"
    if current == intent.after_sha256:
        rebuild(file)
        append_line(history, min(intent.history_size, _size(history)), intent.line)
        note = f"{what}: completed it (generated/ rebuilt, history line written)"
    elif current == intent.before_sha256:
        if _size(history) > intent.history_size:
            with open(history, "r+b") as fh:
                fh.truncate(intent.history_size)
        rebuild(file)
        note = f"{what}: undone, {intent.file} was not changed (generated/ rebuilt from it)"
    else:
        rebuild(file)
        note = f"{what}: {intent.file} was changed since, so generated/ was rebuilt from it and the history left as it is"
    finish(layout)
    return note


def stale_temps(layout: Layout) -> list[Path]:
    """Temp files of writers that are gone: ``.<yaml name>.<pid>-*.tmp`` beside vilms.yaml
    (any ``.*.yaml.*.tmp`` of an older vilms, which put no pid in it) and the journal's."""
    found = []
    for folder, pattern in ((layout.root, ".*.tmp"), (layout.journal.parent, f"{layout.journal.name}.*.tmp")):
        try:
            candidates = list(folder.glob(pattern))
        except OSError:
            continue
        for path in candidates:
            name = path.name
            if folder == layout.root and not (".yaml." in name or ".yml." in name):
                continue
            pid = name.removesuffix(".tmp").rsplit(".", 1)[-1].partition("-")[0]
            if path.is_file() and not path.is_symlink() and not process_running(pid):
                found.append(path)
    return sorted(found)


def remove_stale_temps(layout: Layout) -> None:
    for path in stale_temps(layout):
        path.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
