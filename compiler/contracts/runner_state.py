"""``.vilms/run/<deployment>/state.json`` (kind RunnerState): what the local runner's supervisor runs.

Written only by the supervisor (:mod:`vilms.runtime.local.supervisor`), atomically, each
time something changes; read by `vilms up`, `vilms status` and `vilms down`. A process is
identified by its pid together with its start time in clock ticks (``ticks``, from
``/proc/<pid>/stat``; null where there is no /proc), so a reused pid is never signalled.
"""

from __future__ import annotations

from vilms.compiler.document import Path_, dotted
from vilms.compiler.record import record
from vilms.compiler.reporter import Reporter

from .contract import Contract

DOWN = ("failed", "stopped")  # process states without a pid


@record
class ProcessId:
    pid: int
    ticks: int | None  # start time since boot, in clock ticks


@record
class StartError:
    """Why the start failed: which process, what happened, and its log."""

    process: str
    message: str
    log: str


@record
class ProcessState:
    name: str
    kind: str  # llamacpp | gateway
    host: str
    port: int
    url: str
    health_url: str  # answers 200 once the process serves
    pid: int | None  # None while it does not run
    ticks: int | None
    state: str  # starting | running | restarting | failed | stopped
    restarts: int
    started_at: str | None  # UTC, ISO 8601; None before its first start
    last_exit: int | None  # exit code, negative for a signal
    exit_reason: str | None  # why it last stopped: "exited with signal SIGKILL", "health probe failed 3 times (timed out)" …
    log: str  # absolute path of its log file


@record
class RunnerState:
    status: str  # starting | running | stopping | failed
    deployment: str
    project: str  # absolute path of vilms.yaml
    plan_sha256: str  # of the local plan it runs (see vilms.runtime.local.plan.plan_sha256)
    routes_sha256: str | None  # of the routes its gateway serves (the run folder's copy); None before the copy
    started_at: str  # UTC, ISO 8601
    gateway_url: str | None
    logs: str  # absolute path of the logs folder
    supervisor: ProcessId
    processes: tuple[ProcessState, ...]
    error: StartError | None  # set when the start failed


def _check(state: RunnerState, report: Reporter) -> None:
    names: dict[str, str] = {}
    ports: dict[int, str] = {}
    for i, proc in enumerate(state.processes):
        at: Path_ = ("processes", i)
        if proc.name in names:
            report.error((*at, "name"), f"process name {proc.name!r} is already used by {names[proc.name]}")
        names.setdefault(proc.name, dotted(at))
        if proc.port in ports:
            report.error((*at, "port"), f"port {proc.port} is already used by {ports[proc.port]}")
        ports.setdefault(proc.port, dotted(at))
        if proc.pid is not None and proc.state in DOWN:
            report.error((*at, "pid"), f"a {proc.state} process has no pid; got {proc.pid}")
        if proc.pid is None and proc.state == "running":
            report.error((*at, "pid"), "a running process has a pid; got null")
        if proc.pid is None and proc.ticks is not None:
            report.error((*at, "ticks"), "ticks belong to a pid, and pid is null")
    if state.error is not None and state.error.process not in names:
        report.error(("error", "process"), f"unknown process {state.error.process!r}")
    if state.status == "failed" and state.error is None:
        report.error(("error",), "a failed start says why; got null")


RUNNER_STATE = Contract(
    kind="RunnerState",
    root=RunnerState,
    schema_file="runner-state.schema.json",
    format="json",
    remedy="stop the deployment (`vilms down`) and start it again (`vilms up`)",
    check=_check,
)
