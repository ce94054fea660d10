"""`vilms status` as a function: each process of a local deployment, probed. No printing."""

from __future__ import annotations

import calendar
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vilms.compiler.contracts.local_plan import GATEWAY_PROCESS, LOCAL_PLAN, SERVER_KIND, LocalPlan
from vilms.compiler.contracts.runner_state import RunnerState
from vilms.compiler.errors import InvalidInputError

from . import engine_key, processes
from .health import probe
from .observe import Seen, current, running_deployments
from .plan import built_sha256
from .project import Project, deployment_in_view

OLDER_BUILD = "running an older build"


@dataclass(frozen=True)
class ProcessRow:
    """One process as `vilms status` shows it."""

    name: str
    kind: str
    state: str  # starting | running | restarting | failed | stopped
    pid: int | None  # only while it runs
    port: int
    url: str | None
    health: str | None  # "ok", or why its health URL does not answer 200; None when it does not run
    restarts: int
    log: str | None
    uptime_s: int | None = None  # seconds since its last start, while it runs
    exit_reason: str | None = None  # why it last stopped
    rss_kib: int | None = None  # resident memory (VmRSS), while it runs
    model: str | None = None  # llama.cpp server: the model it answers as (the built plan's)
    adapters: tuple[str, ...] = ()  # llama.cpp server: its LoRA adapters, in slot order


@dataclass(frozen=True)
class Report:
    """What `vilms status` shows."""

    deployment: str | None
    status: str  # starting | running | stopping | failed | stopped | unknown (state file unreadable)
    healthy: bool
    seen: Seen | None = None
    processes: tuple[ProcessRow, ...] = ()
    build: str | None = None  # "current", or OLDER_BUILD: generated/ holds a newer build than it runs

    @property
    def state(self) -> RunnerState | None:
        return self.seen.state if self.seen else None

    def as_dict(self) -> dict[str, Any]:
        state, seen = self.state, self.seen
        return {"deployment": self.deployment, "status": self.status, "healthy": self.healthy,
                "supervisor_pid": seen.supervisor_pid if seen else None,
                "started_at": state.started_at if state else None, "build": self.build,
                "gateway_url": state.gateway_url if state else None, "logs": state.logs if state else None,
                "stale_cleaned": bool(seen and seen.stale_cleaned), "state_file_problem": seen.problem if seen else None,
                "processes": [{**asdict(row), "adapters": list(row.adapters)} for row in self.processes]}


def status(file: Path, deployment: str | None) -> Report:
    project = Project.at(file)
    name = deployment_in_view(project, deployment, running=running_deployments(project))
    if name is None:
        return Report(None, "stopped", healthy=False)
    seen = current(project.run_dir(name))
    plan = _plan(project, name)
    if not seen.supervised:
        return Report(name, "stopped", healthy=False, seen=seen, processes=_planned_as_stopped(plan))
    if seen.state is None:  # not written yet, or unreadable
        return Report(name, "unknown" if seen.unreadable else "starting", healthy=False, seen=seen)
    servers = {s.name: s for s in plan.servers} if plan is not None else {}
    rows = []
    key = engine_key.bearer(engine_key.read(project.run_dir(name).path))  # servers answer only with it
    for proc in seen.state.processes:
        up_now = proc.pid is not None and processes.alive(proc.pid, proc.ticks)
        headers = dict(key) if proc.kind != GATEWAY_PROCESS else None
        health = (probe(proc.health_url, headers=headers) or "ok") if up_now else None
        spec = servers.get(proc.name)
        rows.append(ProcessRow(name=proc.name, kind=proc.kind, state=proc.state, pid=proc.pid if up_now else None,
                               port=proc.port, url=proc.url, health=health, restarts=proc.restarts, log=proc.log,
                               uptime_s=_uptime(proc.started_at) if up_now else None, exit_reason=proc.exit_reason,
                               rss_kib=rss_kib(proc.pid) if up_now and proc.pid else None,
                               model=spec.model_alias if spec else None,
                               adapters=tuple(lora.adapter for lora in spec.lora) if spec else ()))
    build = None
    if plan is not None:
        current_build = (seen.state.plan_sha256, seen.state.routes_sha256) == built_sha256(project.layout, plan)
        build = "current" if current_build else OLDER_BUILD
    healthy = seen.state.status == "running" and bool(rows) and build != OLDER_BUILD and all(
        r.state == "running" and r.health == "ok" for r in rows)
    return Report(name, seen.state.status, healthy=healthy, seen=seen, processes=tuple(rows), build=build)


def rss_kib(pid: int) -> int | None:
    """The process's resident memory in KiB (``VmRSS`` of /proc/<pid>/status); None where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _uptime(started_at: str | None) -> int | None:
    if started_at is None:
        return None
    started = calendar.timegm(time.strptime(started_at, "%Y-%m-%dT%H:%M:%SZ"))
    return max(0, int(time.time() - started))


def _plan(project: Project, name: str) -> LocalPlan | None:
    try:
        return LOCAL_PLAN.load(project.plan_file(name))
    except InvalidInputError:  # not built (any more), or broken: `vilms up` reports it, located
        return None


def _planned_as_stopped(plan: LocalPlan | None) -> tuple[ProcessRow, ...]:
    if plan is None:
        return ()
    rows = [(s.name, SERVER_KIND, s.port) for s in plan.servers] + [(GATEWAY_PROCESS, GATEWAY_PROCESS, plan.gateway.port)]
    return tuple(ProcessRow(name=n, kind=k, state="stopped", pid=None, port=p, url=None, health=None, restarts=0, log=None)
                 for n, k, p in rows)
