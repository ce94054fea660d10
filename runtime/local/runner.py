"""`vilms up` / `status` / `down` as functions: checks, start, report, stop. No printing.

`up` checks everything it can before starting anything (fresh build, files, extras,
environment, ports), then runs the supervisor in the foreground or as a detached process
and waits until the deployment serves or its start failed.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vilms.compiler.errors import ActionError
from vilms.compiler.facts import llamacpp

from . import processes
from .health import port_free, probe
from .launch import GATEWAY, Launch, launches
from .plan import LocalPlan, load_plan
from .policy import RestartPolicy
from .project import Project, deployment_in_view, deployment_to_start
from .state import RunDir
from .supervisor import START_TIMEOUT_S, Supervisor

DOWN_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 40
_NEEDS = {"llama_cpp": "llama-cpp-python", "uvicorn": "llama-cpp-python[server]", "httptools": "httptools",
          "orjson": "orjson"}


@dataclass
class UpResult:
    state: dict[str, Any]
    already_running: bool = False


@dataclass
class Report:
    """What `vilms status` shows."""

    deployment: str | None
    status: str  # starting | running | stopping | stopped
    healthy: bool
    state: dict[str, Any] | None = None
    processes: list[dict[str, Any]] = field(default_factory=list)
    stale_cleaned: bool = False

    def as_dict(self) -> dict[str, Any]:
        state = self.state or {}
        return {"deployment": self.deployment, "status": self.status, "healthy": self.healthy,
                "supervisor_pid": (state.get("supervisor") or {}).get("pid"), "started_at": state.get("started_at"),
                "gateway_url": state.get("gateway_url"), "logs": state.get("logs"), "processes": self.processes}


# -- up ---------------------------------------------------------------------------------

def up(file: Path, deployment: str | None, *, foreground: bool = False, timeout_s: float = START_TIMEOUT_S,
       policy: RestartPolicy | None = None, on_ready: Any = None) -> UpResult:
    project = Project.at(file)
    name = deployment_to_start(project, deployment)
    plan = load_plan(project.plan_file(name))
    run_dir = project.run_dir(name)
    # The run's lock, taken here and handed to the supervisor: two `vilms up` cannot both start.
    lock = run_dir.acquire(wait_s=0.2)
    if lock is None:
        running = run_dir.read() or _starting(run_dir)
        if running.get("status") != "running":  # another `vilms up` is starting it: its outcome is ours
            running = _await_other_start(run_dir, name, timeout_s)
        if running.get("plan_sha256") not in (None, plan.sha256):
            raise ActionError(f"deployment {name} is running an older build of {plan.file.name}",
                              hint=f"restart it to apply the new one: vilms down {name} && vilms up {name}")
        return UpResult(running, already_running=True)
    try:
        _clean_stale(run_dir)
        _check_installed()
        planned = launches(plan, project.file.parent)
        _check_environment(plan)
        _check_ports(planned)
        policy = policy or RestartPolicy()
        if not foreground:
            return UpResult(_start_detached(project, name, run_dir, lock, timeout_s, policy))
        supervisor = Supervisor(plan, planned, run_dir, project.file, policy=policy, start_timeout_s=timeout_s,
                                cwd=project.file.parent)
        state: dict[str, Any] = {}

        def ready(snapshot: dict[str, Any]) -> None:
            state.update(snapshot)
            if on_ready is not None:
                on_ready(snapshot)

        held, lock = lock, None  # the supervisor closes it
        code = supervisor.run(ready, lock=held)
        if code != 0:
            error = supervisor.state().get("error")
            run_dir.clear()
            raise _start_failure(name, error, run_dir)
        return UpResult(state)
    finally:
        if lock is not None:
            os.close(lock)


def _await_other_start(run_dir: RunDir, name: str, timeout_s: float) -> dict[str, Any]:
    """Wait for a start (or stop) another command is running: its state once serving, else an error."""
    limit = 2 * timeout_s + 30  # servers, then the gateway, each within timeout_s
    deadline = time.monotonic() + limit
    while True:
        state = run_dir.read()
        supervised = run_dir.supervised()
        if supervised and state is not None and state.get("status") == "running":
            return state
        status = (state or {}).get("status")
        if not supervised or status in ("failed", "stopping"):
            raise ActionError(f"deployment {name} was being {'stopped' if status == 'stopping' else 'started'} "
                              "by another command, and it is not running",
                              hint=f"see `vilms status {name}` and the logs in {run_dir.logs}; then `vilms up {name}`")
        if time.monotonic() > deadline:
            raise ActionError(f"deployment {name} is still starting after {limit:.0f} s",
                              hint=f"see `vilms status {name}` and the logs in {run_dir.logs}")
        time.sleep(0.1)


def _check_installed() -> None:
    missing = sorted({pkg for module, pkg in _NEEDS.items() if importlib.util.find_spec(module) is None})
    if missing:
        raise ActionError(f"the local runner needs {', '.join(missing)}, which is not installed",
                          hint="pip install 'vilms[serve]'")


def _check_environment(plan: LocalPlan) -> None:
    """The gateway refuses to start without the keys its routes name; say so before any
    model loads. Only names are read, never values."""
    try:
        routes = yaml.safe_load(plan.routes_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return  # the gateway reports a broken routes file itself, located
    if not isinstance(routes, dict):
        return
    names = [(routes.get("gateway") or {}).get("api_keys_env")]
    names += [b.get("api_key_env") for b in (routes.get("backends") or {}).values() if isinstance(b, dict)]
    unset = sorted({n for n in names if isinstance(n, str) and not os.environ.get(n, "").strip()})
    if unset:
        raise ActionError(f"the gateway of {plan.deployment} reads {', '.join(unset)} from the environment, "
                          f"and {'it is' if len(unset) == 1 else 'they are'} unset or empty",
                          hint=f"export {unset[0]}=key1,key2 before `vilms up` (or set gateway.api_keys: null in vilms.yaml)")


def _check_ports(planned: list[Launch]) -> None:
    taken = [launch for launch in planned if not port_free(launch.host, launch.port)]
    if taken:
        listed = ", ".join(f"{launch.host}:{launch.port} ({launch.name})" for launch in taken)
        hint = "stop what listens there (`vilms status` shows local deployments)"
        if any(launch.kind == GATEWAY for launch in taken):
            hint += "; the gateway's port is the deployment's gateway_port in vilms.yaml"
        if any(launch.kind != GATEWAY for launch in taken):
            hint += f"; llama.cpp servers use the deployment's engine_port (default {llamacpp.FIRST_PORT}) and up"
        raise ActionError(f"port{'s' if len(taken) > 1 else ''} already in use: {listed}", hint=hint)


def _start_detached(project: Project, name: str, run_dir: RunDir, lock: int, timeout_s: float,
                    policy: RestartPolicy) -> dict[str, Any]:
    run_dir.ensure()
    argv = [sys.executable, "-m", "vilms", "supervise", "--file", str(project.file), "--deployment", name,
            "--lock-fd", str(lock), "--timeout", repr(timeout_s), "--restart-backoff", repr(policy.backoff_s),
            "--give-up-after", str(policy.give_up_after)]
    supervisor_log = run_dir.log("supervisor")
    supervisor_log.write_bytes(b"")
    with open(supervisor_log, "ab") as out:  # O_APPEND: the log may be rotated under it
        # a session of its own: it outlives this command and no terminal signal reaches it;
        # it inherits the locked descriptor, so the lock passes to it without a gap
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=project.file.parent, start_new_session=True, pass_fds=(lock,))
    deadline = time.monotonic() + 2 * timeout_s + 30  # servers, then the gateway, each within timeout_s
    try:
        while True:
            if time.monotonic() > deadline:  # the supervisor enforces the timeouts; this is a backstop
                proc.send_signal(signal.SIGTERM)
            code = proc.poll()
            state = run_dir.read()
            mine = state is not None and (state.get("supervisor") or {}).get("pid") == proc.pid
            if mine and state["status"] == "running" and code is None:
                return state
            if code is not None:
                error = state.get("error") if mine else None
                run_dir.clear()  # this command still holds the lock: nobody else wrote it
                if error is None:
                    error = {"process": "supervisor", "message": f"exited with code {code}",
                             "log": str(run_dir.log("supervisor"))}
                raise _start_failure(name, error, run_dir)
            time.sleep(0.1)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        run_dir.clear()
        raise


def _start_failure(name: str, error: dict[str, Any] | None, run_dir: RunDir) -> ActionError:
    error = error or {"process": "?", "message": "failed", "log": str(run_dir.log("supervisor"))}
    log = Path(error["log"])
    tail = log_tail(log)
    text = f"deployment {name} did not start: {error['process']} {error['message']}"
    if tail:
        text += f"\n--- last lines of {log} ---\n" + tail
    return ActionError(text, hint=f"nothing was left running; full log: {log}")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines)).rstrip("\n")
    except OSError:
        return ""


# -- what runs --------------------------------------------------------------------------

def current(run_dir: RunDir) -> tuple[dict[str, Any] | None, bool]:
    """The state of a supervised deployment, or None. State left by a supervisor that died
    (a crash, a reboot) is cleaned, and any of its children still running are killed;
    the second value says whether that happened."""
    if run_dir.supervised():
        return run_dir.read() or _starting(run_dir), False
    return None, _clean_stale(run_dir)


def _starting(run_dir: RunDir) -> dict[str, Any]:
    """What a supervisor that has not written its state yet looks like."""
    return {"status": "starting", "supervisor": {"pid": run_dir.holder()}, "processes": []}


def _clean_stale(run_dir: RunDir) -> bool:
    """Remove the state of a supervisor that is gone (call when no supervisor holds the
    lock) and kill any child of it still running. True when there was such state."""
    state = run_dir.read()
    if state is None:
        return False
    for proc in state.get("processes") or []:
        if processes.alive(proc.get("pid"), proc.get("ticks")):
            processes.signal_group(proc["pid"], signal.SIGKILL)
    run_dir.clear()
    return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def running_deployments(project: Project) -> list[str]:
    return [name for name in project.with_state() if project.run_dir(name).supervised()]


# -- status -----------------------------------------------------------------------------

def status(file: Path, deployment: str | None) -> Report:
    project = Project.at(file)
    name = deployment_in_view(project, deployment, running=running_deployments(project))
    if name is None:
        return Report(None, "stopped", healthy=False)
    state, stale = current(project.run_dir(name))
    if state is None:
        return Report(name, "stopped", healthy=False, processes=_planned_as_stopped(project, name), stale_cleaned=stale)
    rows = []
    for proc in state.get("processes") or []:
        up_now = processes.alive(proc.get("pid"), proc.get("ticks"))
        health = (probe(proc["health_url"]) or "ok") if up_now else None
        rows.append({"name": proc["name"], "kind": proc["kind"], "state": proc["status"],
                     "pid": proc["pid"] if up_now else None, "port": proc["port"], "url": proc["url"],
                     "health": health, "restarts": proc["restarts"], "log": proc["log"]})
    healthy = state.get("status") == "running" and bool(rows) and all(
        r["state"] == "running" and r["health"] == "ok" for r in rows)
    return Report(name, state.get("status", "starting"), healthy=healthy, state=state, processes=rows)


def _planned_as_stopped(project: Project, name: str) -> list[dict[str, Any]]:
    try:
        plan = load_plan(project.plan_file(name))
    except ActionError:
        return []
    rows = [(s.name, "llamacpp", s.port) for s in plan.servers] + [(GATEWAY, GATEWAY, plan.gateway.port)]
    return [{"name": n, "kind": k, "state": "stopped", "pid": None, "port": p, "url": None, "health": None,
             "restarts": 0, "log": None} for n, k, p in rows]


# -- down -------------------------------------------------------------------------------

@dataclass
class DownResult:
    deployment: str | None
    stopped: list[str]
    stale_cleaned: bool = False
    killed: bool = False  # the supervisor had to be killed after the timeout


def down(file: Path, deployment: str | None, *, timeout_s: float = DOWN_TIMEOUT_S) -> DownResult:
    project = Project.at(file)
    name = deployment_in_view(project, deployment, running=running_deployments(project))
    if name is None:
        return DownResult(None, [])
    run_dir = project.run_dir(name)
    state, stale = current(run_dir)
    if state is None:
        return DownResult(name, [], stale_cleaned=stale)
    names = [p["name"] for p in state.get("processes") or []]
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
        latest = run_dir.read() or state
        holder = run_dir.holder()
        if holder:
            _signal(holder, signal.SIGKILL)
            signalled.add(holder)
        for proc in latest.get("processes") or []:
            if processes.alive(proc.get("pid"), proc.get("ticks")):
                processes.signal_group(proc["pid"], signal.SIGKILL)
        while run_dir.supervised() and time.monotonic() < deadline + 10:
            time.sleep(0.05)
    # the lock goes just before the supervisor exits: wait for it and its children to be gone
    leftovers = [(p["pid"], p.get("ticks")) for p in (state.get("processes") or []) if p.get("pid")]
    supervisor = state.get("supervisor") or {}
    leftovers += [(pid, supervisor.get("ticks") if pid == supervisor.get("pid") else None) for pid in signalled]
    processes.wait_gone(leftovers, 10.0)
    run_dir.clear()
    return DownResult(name, names, killed=killed)
