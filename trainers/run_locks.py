"""Which runs are being trained right now: a kernel lock per run, ``.vilms/locks/<run_id>.run.lock``.

The trainer that trains a run holds an exclusive ``flock`` on its lock file from the moment
it picks the run until it ends (torchrun's workers and Ray Train's workers train under the
process that holds it). The kernel drops the lock with its holder however the holder ends
(SIGKILL included), so a run whose record says ``running`` but whose lock is free was
killed: it may be resumed, or marked abandoned, and its temp leftovers removed. A run whose
lock is held is never touched. Picking a run happens under a second, short-lived lock per
adapter, so two trainers started at once on one adapter cannot pick the same run.
Where there is no ``flock`` (Windows) nothing is locked and every run looks free. The folder
holds a ``.gitignore`` of ``*``: lock files never land in git.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vilms.compiler.errors import ActionError
from vilms.compiler.layout import Layout

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

ADAPTER_LOCK_TIMEOUT_S = 60.0  # picking a run takes milliseconds; a minute means something is wrong
_held: dict[Path, int] = {}  # run lock file → its descriptor, while this process trains that run


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ignore = path.parent / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# locks of running trainers; never committed\n*\n", encoding="utf-8")
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ActionError(f"cannot create the lock {path}: {exc.strerror or exc}",
                          hint=".vilms/ beside vilms.yaml must be a writable folder") from None


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def picking(layout: Layout, adapter: str, timeout_s: float = ADAPTER_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold ``adapter``'s pick lock for the block (waits up to ``timeout_s`` for another trainer's pick)."""
    path = layout.adapter_lock(adapter)
    fd = _open(path)
    try:
        deadline = time.monotonic() + timeout_s
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise ActionError(f"another trainer has been picking a run of {adapter} for {timeout_s:.0f} s",
                                  hint=f"the lock is {path}; it is released when that trainer exits")
            time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def hold(layout: Layout, run_id: str) -> bool:
    """Take ``run_id``'s lock for this process (until :func:`release`); False if another process holds it."""
    path = layout.run_lock(run_id)
    if path in _held:
        return True
    fd = _open(path)
    if not _try_lock(fd):
        os.close(fd)
        return False
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[path] = fd
    return True


@contextmanager
def holding(layout: Layout, run_id: str, timeout_s: float) -> Iterator[None]:
    """Hold ``run_id``'s lock for the block, waiting up to ``timeout_s`` for its holder (a trainer
    finishing, another `vilms approve`): one read-modify-write of the run's record at a time."""
    deadline = time.monotonic() + timeout_s
    while not hold(layout, run_id):
        if time.monotonic() > deadline:
            pid = holder(layout, run_id)
            raise ActionError(f"run {run_id} is held by another process" + (f" (pid {pid})" if pid else "")
                              + f" for more than {timeout_s:.0f} s",
                              hint="try again when it ends (`vilms runs` shows which runs a trainer holds)")
        time.sleep(0.05)
    try:
        yield
    finally:
        release(layout, run_id)


def release(layout: Layout, run_id: str) -> None:
    """Give ``run_id``'s lock up (a no-op when this process does not hold it)."""
    fd = _held.pop(layout.run_lock(run_id), None)
    if fd is not None:
        os.close(fd)


def holder(layout: Layout, run_id: str) -> int | None:
    """The pid written by the process that holds (or last held) ``run_id``'s lock, if any."""
    try:
        text = layout.run_lock(run_id).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def is_live(layout: Layout, run_id: str) -> bool:
    """Is some process training ``run_id`` now (its lock held, by this process or another)?"""
    path = layout.run_lock(run_id)
    if path in _held:
        return True
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        return not _try_lock(fd)
    finally:
        os.close(fd)  # also drops the lock just taken
