"""`vilms restart [NAME]` (and `vilms up` on a deployment with failed processes) as a function:
ask the running supervisor to restart processes, and wait until they serve. No printing."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler.contracts.runner_state import RunnerState
from vilms.compiler.errors import ActionError, InvalidInputError, UsageError

from . import processes
from .observe import running_deployments, unreadable_text
from .project import Project, deployment_in_view
from .state import RunDir
from .supervisor import RESTART_SIGNAL, START_TIMEOUT_S

RESTART_SLACK_S = 45.0  # beyond the start timeout: the gateway drains up to 35 s before it stops


@dataclass(frozen=True)
class RestartResult:
    deployment: str
    restarted: tuple[str, ...]
    state: RunnerState


def restart(file: Path, deployment: str | None, names: Sequence[str] = (), *,
            timeout_s: float = START_TIMEOUT_S) -> RestartResult:
    """Restart ``names`` (every process when empty) of a running local deployment."""
    project = Project.at(file)
    name = deployment_in_view(project, deployment, running=running_deployments(project))
    run_dir = project.run_dir(name) if name is not None else None
    if name is None or run_dir is None or not run_dir.supervised():
        raise ActionError(f"deployment {name} is not running" if name else "no local deployment is running",
                          hint=f"vilms up {name or ''}".rstrip())
    state = _read(run_dir, name)
    known = [p.name for p in state.processes]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"deployment {name} has no process {unknown[0]!r}", hint=f"its processes: {', '.join(known)}")
    return restart_running(run_dir, name, state, tuple(names) or tuple(known), timeout_s=timeout_s)


def restart_running(run_dir: RunDir, name: str, state: RunnerState, names: tuple[str, ...], *,
                    timeout_s: float) -> RestartResult:
    """Send the restart request to ``state``'s supervisor and wait until ``names`` serve again."""
    me = state.supervisor
    if not processes.alive(me.pid, me.ticks):
        raise ActionError(f"the supervisor of deployment {name} is gone", hint=f"vilms up {name}")
    before = {p.name: (p.pid, p.ticks, p.restarts) for p in state.processes}
    run_dir.request_restart(list(names))
    os.kill(me.pid, RESTART_SIGNAL)
    deadline = time.monotonic() + timeout_s + RESTART_SLACK_S
    while True:
        time.sleep(0.1)
        now = _read(run_dir, name)
        rows = {p.name: p for p in now.processes}
        moved = all(n in rows and (rows[n].pid, rows[n].ticks, rows[n].restarts) != before.get(n) for n in names)
        if moved and not run_dir.restart_file.exists():
            failed = [n for n in names if rows[n].state == "failed"]
            if failed:
                raise ActionError(f"{failed[0]} of deployment {name} failed to start again: {rows[failed[0]].exit_reason}",
                                  hint=f"see {rows[failed[0]].log} (or `vilms logs {failed[0]}`)")
            if all(rows[n].state == "running" for n in names):
                return RestartResult(name, names, now)
        if not run_dir.supervised():
            raise ActionError(f"deployment {name} stopped while restarting", hint=f"see the logs in {run_dir.logs}")
        if time.monotonic() > deadline:
            raise ActionError(f"{', '.join(names)} of deployment {name} did not serve again within "
                              f"{timeout_s + RESTART_SLACK_S:.0f} s", hint=f"see `vilms status {name}` and `vilms logs`")


def _read(run_dir: RunDir, name: str) -> RunnerState:
    try:
        state = run_dir.read()
    except InvalidInputError as exc:
        raise ActionError(f"deployment {name} is supervised, but its state file cannot be read:\n" + unreadable_text(exc),
                          hint=f"`vilms down {name}`, then `vilms up {name}`") from None
    if state is None:
        raise ActionError(f"deployment {name} is still starting", hint=f"see `vilms status {name}`")
    return state
