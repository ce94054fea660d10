"""What runs: a deployment's run folder read as `vilms status`, `down` and `up` see it.

"Is it supervised" is the run's lock, never the state file. The state file says what the
supervisor runs; a file this version cannot read (corrupt, or written by another ViLMS
version) is not fatal: the deployment is still reported (and can be stopped through the
lock's holder), with the located reason the file was not read. State left by a supervisor
that died is removed, and any of its children still running are killed.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from vilms.compiler.contracts.runner_state import RunnerState
from vilms.compiler.errors import InvalidInputError

from . import processes
from .project import Project
from .state import RunDir


@dataclass(frozen=True)
class Seen:
    supervised: bool  # a supervisor holds the run's lock
    state: RunnerState | None  # what it last wrote (None: nothing yet, unreadable, or not supervised)
    supervisor_pid: int | None  # the lock's holder, while supervised
    unreadable: InvalidInputError | None  # why the state file could not be read
    stale_cleaned: bool = False  # a dead supervisor's state was removed

    @property
    def problem(self) -> str | None:
        """The unreadable state file's located diagnostics, one per line."""
        return unreadable_text(self.unreadable) if self.unreadable else None


def unreadable_text(error: InvalidInputError) -> str:
    return "\n".join(d.render() for d in error.diagnostics)


def current(run_dir: RunDir) -> Seen:
    """The run folder of one deployment, cleaning what a dead supervisor left."""
    if not run_dir.supervised():
        return clean_stale(run_dir)
    try:
        state, unreadable = run_dir.read(), None
    except InvalidInputError as exc:
        state, unreadable = None, exc
    pid = state.supervisor.pid if state is not None else run_dir.holder()
    return Seen(True, state, pid, unreadable)


def clean_stale(run_dir: RunDir) -> Seen:
    """Remove the state of a supervisor that is gone (call when no supervisor holds the
    lock) and kill any child of it still running."""
    try:
        state = run_dir.read()
    except InvalidInputError as exc:
        # its children's pids are unknown; they died with their supervisor (PR_SET_PDEATHSIG)
        run_dir.clear()
        return Seen(False, None, None, exc, stale_cleaned=True)
    if state is None:
        return Seen(False, None, None, None)
    for proc in state.processes:
        if proc.pid is not None and processes.alive(proc.pid, proc.ticks):
            processes.signal_group(proc.pid, signal.SIGKILL)
    run_dir.clear()
    return Seen(False, None, None, None, stale_cleaned=True)


def running_deployments(project: Project) -> list[str]:
    return [name for name in project.with_runs() if project.run_dir(name).supervised()]
