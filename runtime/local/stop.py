"""`vilms down` as a function: SIGTERM to the supervisor (the lock's holder), which stops
its processes in order; killing after a timeout. Works without a readable state file."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler.contracts.runner_state import RunnerState
from vilms.compiler.errors import InvalidInputError

from . import processes
from .observe import current, running_deployments
from .project import Project, deployment_in_view
from .state import RunDir

DOWN_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DownResult:
    deployment: str | None
    was_running: bool = False
    stopped: tuple[str, ...] = ()  # its processes, as its state file named them
    stale_cleaned: bool = False  # it was not running, and its dead supervisor's state was removed
    killed: bool = False  # the supervisor had to be killed after the timeout
    problem: str | None = None  # why its state file could not be read


def down(file: Path, deployment: str | None, *, timeout_s: float = DOWN_TIMEOUT_S) -> DownResult:
    project = Project.at(file)
    name = deployment_in_view(project, deployment, running=running_deployments(project))
    if name is None:
        return DownResult(None)
    run_dir = project.run_dir(name)
    seen = current(run_dir)
    if not seen.supervised:
        return DownResult(name, stale_cleaned=seen.stale_cleaned, problem=seen.problem)
    state = seen.state
    signalled: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while run_dir.supervised() and time.monotonic() < deadline:
        holder = run_dir.holder()  # whoever holds the lock wrote its pid there
        if holder and holder not in signalled:
            _signal(holder, signal.SIGTERM)
            signalled.add(holder)
        time.sleep(0.05)
    killed = run_dir.supervised()
    if killed:  # a supervisor stuck past the timeout: kill it and whatever it started
        latest = _latest(run_dir) or state
        holder = run_dir.holder()
        if holder:
            _signal(holder, signal.SIGKILL)
            signalled.add(holder)
        for proc in latest.processes if latest else ():
            if proc.pid is not None and processes.alive(proc.pid, proc.ticks):
                processes.signal_group(proc.pid, signal.SIGKILL)
        while run_dir.supervised() and time.monotonic() < deadline + 10:
            time.sleep(0.05)
    # the lock goes just before the supervisor exits: wait for it and its children to be gone
    leftovers = [(p.pid, p.ticks) for p in (state.processes if state else ()) if p.pid is not None]
    leftovers += [(pid, state.supervisor.ticks if state and pid == state.supervisor.pid else None) for pid in signalled]
    processes.wait_gone(leftovers, 10.0)
    run_dir.clear()
    names = tuple(p.name for p in state.processes) if state else ()
    return DownResult(name, was_running=True, stopped=names, killed=killed, problem=seen.problem)


def _latest(run_dir: RunDir) -> RunnerState | None:
    try:
        return run_dir.read()
    except InvalidInputError:
        return None


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
