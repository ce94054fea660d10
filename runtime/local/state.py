"""A deployment's run folder, ``.vilms/run/<deployment>/`` beside vilms.yaml (``Layout.runner_dir``).

``state.json`` (the :data:`~vilms.compiler.contracts.runner_state.RUNNER_STATE` contract) is
written only by the supervisor, atomically (temp file + rename), and read by `vilms
up/status/down`. ``lock`` is held (``flock``) by the supervisor for its whole life: the
kernel drops it when the supervisor dies, however it dies, so "is it running" never trusts
a pid that may have been reused after a reboot. ``logs/`` keeps one log per process plus
the supervisor's own. ``routes.yaml`` is the routes the gateway serves: the supervisor copies
``generated/<deployment>/gateway/routes.yaml`` there when it starts or applies a build, so
`vilms build` alone never changes what the running gateway routes by.
``.vilms/run/.gitignore`` keeps all of it out of git (``.vilms/releases/`` beside it is history meant to be committed).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler.contracts.runner_state import RUNNER_STATE, RunnerState
from vilms.compiler.errors import ActionError
from vilms.compiler.layout import RUNNER_LOCK, RUNNER_LOGS, RUNNER_RESTART, RUNNER_ROUTES, STATE_FILE


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def lock_file(self) -> Path:
        return self.path / RUNNER_LOCK

    @property
    def routes_file(self) -> Path:
        """The routes the gateway serves: a copy of the applied build's, swapped only by the supervisor."""
        return self.path / RUNNER_ROUTES

    @property
    def restart_file(self) -> Path:
        """A restart request: the process names `vilms restart` (or `vilms up`) asks to restart; [] for all."""
        return self.path / RUNNER_RESTART

    def request_restart(self, names: list[str]) -> None:
        self._replace(self.restart_file, json.dumps(sorted(names)).encode())

    def take_restart_request(self) -> list[str] | None:
        """The pending restart request's names (removed once read); None when there is none."""
        try:
            raw = self.restart_file.read_bytes()
            self.restart_file.unlink()
            names = json.loads(raw)
        except (OSError, ValueError):
            return None
        return [str(n) for n in names] if isinstance(names, list) else None

    @property
    def logs(self) -> Path:
        return self.path / RUNNER_LOGS

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

    def read(self) -> RunnerState | None:
        """The last state the supervisor wrote, or None when there is none. Raises
        InvalidInputError, located, for a state file this version cannot read (corrupt, or
        written by another ViLMS version): each caller decides what that means."""
        try:
            raw = self.state_file.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:  # a folder, unreadable: the contract's loader says so, located
            return RUNNER_STATE.load(self.state_file)
        return RUNNER_STATE.parse(raw, str(self.state_file), file=self.state_file)

    def write(self, state: RunnerState) -> None:
        self._replace(self.state_file, RUNNER_STATE.dump(state))

    def write_routes(self, data: bytes) -> bool:
        """Swap the routes copy atomically (temp file, fsync, rename): the gateway reads either
        the old file or the new one, never a part. Returns whether its content changed."""
        try:
            if self.routes_file.read_bytes() == data:
                return False
        except OSError:
            pass
        self._replace(self.routes_file, data)
        return True

    def _replace(self, target: Path, data: bytes) -> None:
        """Write ``target`` in one step: a temp file beside it, fsync, rename."""
        self.ensure()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=target.suffix, dir=self.path)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def clear(self) -> None:
        """Remove the state file (whatever is there: it is the runner's own)."""
        try:
            self.state_file.unlink(missing_ok=True)
        except IsADirectoryError:
            shutil.rmtree(self.state_file)
        except NotADirectoryError:  # .vilms or the run folder is a file: there is no state
            pass
        except OSError as exc:
            raise ActionError(f"cannot remove {self.state_file}: {exc.strerror or exc}",
                              hint="remove it by hand") from None

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
