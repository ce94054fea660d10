"""Process logs: kept across runs, bounded in size, read back by `vilms logs`.

Each `vilms up` moves the previous run's log aside (``<name>.log`` → ``<name>.log.1`` →
``.2`` …, the oldest beyond :data:`KEEP` dropped), so a crashed run's post-mortem survives
the next start. While it runs, a log over :data:`MAX_LOG_BYTES` is rotated the same way by
copy-truncate, as logrotate's ``copytruncate`` does: children write with ``O_APPEND``, so a
log can be emptied under them and they keep writing at its new end. Lines written between
the copy and the truncation are lost (a few at most), the price of never having to restart
a process or reopen its file.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

MAX_LOG_BYTES = 20 * 1024 * 1024
KEEP = 3  # previous parts kept: <name>.log.1 (newest) … <name>.log.3
FOLLOW_POLL_S = 0.2
READ_CHUNK = 64 * 1024


def part(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def _shift(path: Path, keep: int) -> None:
    """Make room for a new ``path.1``: ``.1`` → ``.2`` …, the oldest dropped."""
    part(path, keep).unlink(missing_ok=True)
    for n in range(keep - 1, 0, -1):
        if part(path, n).exists():
            part(path, n).replace(part(path, n + 1))


def rotate(path: Path, keep: int = KEEP) -> bool:
    """Start ``path`` afresh for a new run, keeping its content as ``path.1`` (nothing to keep:
    an empty log). Returns whether there was something to keep."""
    try:
        kept = path.stat().st_size > 0
    except FileNotFoundError:
        kept = False
    if kept:
        _shift(path, keep)
        path.replace(part(path, 1))
    path.write_bytes(b"")
    return kept


def rotate_if_large(path: Path, max_bytes: int = MAX_LOG_BYTES, keep: int = KEEP) -> bool:
    """Copy ``path``'s content to ``path.1`` and empty it in place when it exceeds ``max_bytes``."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    _shift(path, keep)
    shutil.copyfile(path, part(path, 1))
    os.truncate(path, 0)
    return True


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path`` (memory bounded by ``lines``); [] when it is absent."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return [line.rstrip("\n") for line in deque(fh, maxlen=lines)]
    except (FileNotFoundError, IsADirectoryError):
        return []


def follow(path: Path, stop: Callable[[], bool] = lambda: False, poll_s: float = FOLLOW_POLL_S) -> Iterator[str]:
    """New lines appended to ``path`` from now on, across rotation: a log emptied in place
    (copy-truncate) or replaced by a new file (a new run) is read again from its start.
    Reads in chunks; a partial last line waits for its end. Ends when ``stop()`` is true."""
    fh = None
    inode = None
    pending = b""
    try:
        while not stop():
            if fh is None:
                try:
                    fh = open(path, "rb")  # noqa: SIM115 - kept open across iterations
                    inode = os.fstat(fh.fileno()).st_ino
                    fh.seek(0, os.SEEK_END)
                except FileNotFoundError:
                    time.sleep(poll_s)
                    continue
            chunk = fh.read(READ_CHUNK)
            if chunk:
                pending += chunk
                *done, pending = pending.split(b"\n")
                for line in done:
                    yield line.decode("utf-8", errors="replace")
                if len(pending) > READ_CHUNK:  # a line without end: show it in parts, memory stays bounded
                    yield pending.decode("utf-8", errors="replace")
                    pending = b""
                continue
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
            if now is None or now.st_ino != inode:  # replaced by a new run's log
                fh.close()
                fh, pending = None, b""
                if now is not None:  # read the new file from its start
                    fh = open(path, "rb")  # noqa: SIM115
                    inode = os.fstat(fh.fileno()).st_ino
                continue
            if now.st_size < fh.tell():  # emptied in place
                fh.seek(0)
                pending = b""
                continue
            time.sleep(poll_s)
    finally:
        if fh is not None:
            fh.close()
