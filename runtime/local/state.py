"""A deployment's run folder, ``.vilms/run/<deployment>/`` beside vilms.yaml.

``state.json`` is written only by the supervisor, atomically (temp file + rename), and
read by `vilms up/status/down`. ``lock`` is held (``flock``) by the supervisor for its
whole life: the kernel drops it when the supervisor dies, however it dies, so "is it
running" never trusts a pid that may have been reused after a reboot. ``logs/`` keeps one
log per process plus the supervisor's own. ``.vilms/run/.gitignore`` keeps all of it out
of git (``.vilms/releases/`` beside it is history meant to be committed).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilms.compiler.errors import ActionError

RUN_DIR = ".vilms/run"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.path / "lock"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def ensure(self) -> None:
        """Create the folder (and its logs/), and the .gitignore that keeps runs out of git."""
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            ignore = self.path.parent / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# run state and logs of `vilms up`; never committed\n*\n")
        except OSError as exc:
            raise ActionError(f"cannot write the run folder {self.path}: {exc.strerror or exc}",
                              hint="the folder of vilms.yaml must be writable for `vilms up`") from None

    def read(self) -> dict[str, Any] | None:
        """The last state written, or None when there is none (or it is unreadable)."""
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def write(self, state: dict[str, Any]) -> None:
        self.ensure()
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=self.path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(state, fh, indent=2, sort_keys=True)
                fh.write("\n")
            os.replace(tmp, self.state_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def clear(self) -> None:
        self.state_file.unlink(missing_ok=True)

    def supervised(self) -> bool:
        """True while a supervisor holds the lock."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):  # never started (or .vilms is not a folder)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock we may just have taken
        return False

    def acquire(self, wait_s: float = 1.0) -> int | None:
        """Take the lock for this process's life (the fd is not inherited) and write this
        process's pid into it; None if another process holds it. Waits up to ``wait_s``: :meth:`supervised` holds it for a moment."""
        self.ensure()
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.01)
        self.claim(fd)
        return fd

    def claim(self, fd: int) -> None:
        """Record this process as the holder of the lock ``fd`` (taken here or inherited)."""
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def holder(self) -> int | None:
        """The pid the lock file names (the last supervisor's; check :meth:`supervised` too)."""
        try:
            return int(self.lock_file.read_text().strip())
        except (OSError, ValueError):
            return None
