"""One writer per project: an exclusive ``flock`` on ``.vilms/project.lock``.

A second command that would write the project (``vilms build``, rollout, rollback) waits
for it, at most ``VILMS_LOCK_WAIT`` seconds (default 30, ``compiler/facts/locking.py``), then
fails naming the holder's pid, instead of racing it. Whoever gets the lock reads vilms.yaml
and the history only then, so a waiting rollout builds on the one before it. The lock is the kernel's: it goes
away with its holder however that holder ends, so a killed build never leaves a stale
lock. Re-entrant within a process: code that holds it may call code that takes it again.
``.vilms/.gitignore`` keeps the lock file out of git. Where there is no ``flock`` (Windows)
the lock file is written but not locked: builds there are not serialised.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vilms.compiler.errors import ActionError, UsageError
from vilms.compiler.facts.locking import LOCK_POLL_SECONDS, LOCK_WAIT_ENV, LOCK_WAIT_SECONDS
from vilms.compiler.layout import JOURNAL, PROJECT_LOCK, Layout

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

_held: dict[Path, int] = {}  # lock file → how many times this process holds it
_guard = threading.Lock()


@contextmanager
def project_lock(root: Path) -> Iterator[None]:
    """Hold the write lock of the project in ``root`` for the block; raises :class:`ActionError`
    when another process still holds it after the bounded wait (:func:`lock_wait`)."""
    layout = Layout(Path(root).resolve())
    path = layout.project_lock
    with _guard:
        reentered = path in _held
        if reentered:
            _held[path] += 1
    if reentered:
        try:
            yield
        finally:
            with _guard:
                _held[path] -= 1
        return
    fd = _open(layout)
    try:
        if fcntl is not None and not _acquire(fd, lock_wait()):
            holder = _holder(fd)
            who = f"another vilms command (pid {holder})" if holder else "another vilms command"
            waited = lock_wait()
            raise ActionError(f"{who} is writing this project; waited {waited:g} s, try again when it ends",
                              hint=f"the lock is {path}; it is released when that command exits "
                                   f"(wait longer with {LOCK_WAIT_ENV}=SECONDS)") from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        with _guard:
            _held[path] = 1
        try:
            yield
        finally:
            with _guard:
                del _held[path]
    finally:
        os.close(fd)  # releases the lock


def lock_wait() -> float:
    """How long to wait for the lock: ``$VILMS_LOCK_WAIT`` seconds, else the default."""
    raw = os.environ.get(LOCK_WAIT_ENV, "").strip()
    if not raw:
        return LOCK_WAIT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 86400:
        raise UsageError(f"{LOCK_WAIT_ENV} must be a number of seconds from 0 to 86399, not {raw!r}",
                         hint=f"unset it to wait {LOCK_WAIT_SECONDS:g} s")
    return seconds


def _acquire(fd: int, wait: float) -> bool:
    """Take the flock, trying again every LOCK_POLL_SECONDS for ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(LOCK_POLL_SECONDS)


def _open(layout: Layout) -> int:
    """The lock file, opened for writing (created with the .gitignore that names it)."""
    try:
        layout.project_lock.parent.mkdir(exist_ok=True)
        fd = os.open(layout.project_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        _ignore_in_git(layout)
    except (NotADirectoryError, FileExistsError):
        raise ActionError(f"{layout.project_lock.parent} is not a folder; vilms keeps its project state there",
                          hint="move that file away, then try again") from None
    except OSError as exc:
        raise ActionError(f"cannot create {layout.project_lock}: {exc.strerror or exc}",
                          hint=f"{layout.root} must be writable: vilms writes generated/ and .vilms/ beside vilms.yaml") from None
    return fd


IGNORED = tuple(p.rsplit("/", 1)[1] for p in (PROJECT_LOCK, JOURNAL))


def _ignore_in_git(layout: Layout) -> None:
    ignore = layout.state_gitignore
    try:
        text = ignore.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    if text is None:
        ignore.write_text("# the lock and the journal of a command writing this project; never committed\n"
                          + "".join(f"{name}\n" for name in IGNORED), encoding="utf-8")
        return
    lines = text.splitlines()
    missing = [name for name in IGNORED if name not in lines and f"/{name}" not in lines]
    if missing:
        with ignore.open("a", encoding="utf-8") as fh:
            fh.write(("\n" if text and not text.endswith("\n") else "") + "".join(f"{name}\n" for name in missing))


def _holder(fd: int) -> int | None:
    """The pid the holder wrote into the lock file (it may not have written it yet)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None
