"""One writer per project: an exclusive, non-blocking ``flock`` on ``.vilms/project.lock``.

A second command that would write the project (``vilms build``; rollout later) fails at
once, naming the holder's pid, instead of racing it. The lock is the kernel's: it goes
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

from vilms.compiler.errors import ActionError
from vilms.compiler.layout import PROJECT_LOCK, Layout

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

_held: dict[Path, int] = {}  # lock file → how many times this process holds it
_guard = threading.Lock()


@contextmanager
def project_lock(root: Path) -> Iterator[None]:
    """Hold the write lock of the project in ``root`` for the block; raises :class:`ActionError`
    when another process holds it."""
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
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            who = f"another vilms command (pid {holder})" if holder else "another vilms command"
            raise ActionError(f"{who} is writing this project; try again when it ends",
                              hint=f"the lock is {path}; it is released when that command exits") from None
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


def _ignore_in_git(layout: Layout) -> None:
    name = PROJECT_LOCK.rsplit("/", 1)[1]
    ignore = layout.state_gitignore
    try:
        lines = ignore.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = None
    if lines is None:
        ignore.write_text(f"# the lock of a command writing this project; never committed\n{name}\n", encoding="utf-8")
    elif name not in lines and f"/{name}" not in lines:
        with ignore.open("a", encoding="utf-8") as fh:
            fh.write(("\n" if lines and not ignore.read_text(encoding="utf-8").endswith("\n") else "") + f"{name}\n")


def _holder(fd: int) -> int | None:
    """The pid the holder wrote into the lock file (it may not have written it yet)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None
