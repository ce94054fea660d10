"""`vilms up` as a function: every check before anything starts, then the supervisor in the
foreground or as a detached process, until the deployment serves or its start failed.

Checks, in order: a fresh build, the files the plan names, the extras, the environment the
gateway reads, free ports. No printing. When the deployment already runs an older build (its
local.yaml or its routes), the same checks pass first, then its supervisor is asked (SIGUSR1) to apply
the new one: it restarts only the processes whose command line changed.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler.contracts.local_plan import LOCAL_PLAN, LocalPlan
from vilms.compiler.contracts.routes import ROUTES
from vilms.compiler.contracts.runner_state import RunnerState, StartError
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.compiler.facts import llamacpp

from . import engine_key, log_cause, processes
from .health import port_free
from .launch import GATEWAY, Launch, planned
from .logfiles import rotate
from .observe import clean_stale, unreadable_text
from .plan import built_sha256, routes_file
from .policy import RestartPolicy
from .preflight import Preflight
from .preflight import check as preflight_check
from .project import Project, deployment_to_start
from .restart import restart_running
from .state import RunDir
from .supervisor import RELOAD_SIGNAL, START_TIMEOUT_S, Supervisor, log

_NEEDS = {"llama_cpp": "llama-cpp-python", "uvicorn": "llama-cpp-python[server]", "httptools": "httptools",
          "orjson": "orjson", "dns": "dnspython", "httpx": "httpx"}


@dataclass(frozen=True)
class UpResult:
    state: RunnerState
    already_running: bool = False
    restarted: tuple[str, ...] | None = None  # a new build applied to a running deployment: what (re)started
    notes: tuple[str, ...] = ()  # what the user should know about how it runs
    healed: tuple[str, ...] = ()  # it ran the same build: the failed processes it restarted


def up(file: Path, deployment: str | None, *, foreground: bool = False, timeout_s: float = START_TIMEOUT_S,
       policy: RestartPolicy | None = None, on_ready: Callable[[RunnerState], None] | None = None,
       preflight: Preflight | None = None) -> UpResult:
    project = Project.at(file)
    name = deployment_to_start(project, deployment)
    plan = LOCAL_PLAN.load(project.plan_file(name))
    run_dir = project.run_dir(name)
    notes: tuple[str, ...] = ()
    # The run's lock, taken here and handed to the supervisor: two `vilms up` cannot both start.
    lock = run_dir.acquire(wait_s=0.2)
    if lock is None:
        running = _read_running(run_dir, name)
        if running is None or running.status != "running":  # another `vilms up` is starting it: its outcome is ours
            running = _await_other_start(run_dir, name, timeout_s)
        if (running.plan_sha256, running.routes_sha256) != _build_of(project, plan):
            return _apply_new_build(project, name, running, timeout_s, preflight or Preflight())
        failed = tuple(p.name for p in running.processes if p.state == "failed")
        if failed:  # `up` heals: what was marked failed starts again
            healed = restart_running(run_dir, name, running, failed, timeout_s=timeout_s)
            return UpResult(healed.state, healed=healed.restarted)
        return UpResult(running, already_running=True)
    try:
        stale = clean_stale(run_dir).stale_cleaned
        engine_key.rotate(run_dir.path)  # a new engine key for every fresh start
        _check_installed()
        plan, launches = planned(project, name)
        notes = tuple(launch.note for launch in launches if launch.note)
        if stale:
            notes += (f"the previous supervisor of {name} had died; removed the state it left "
                      f"(its logs are kept as {run_dir.logs}/*.log.1)",)
        _check_environment(project, plan)
        _check_ports(launches)
        preflight_check(project, plan, preflight or Preflight())
        policy = policy or RestartPolicy()
        if not foreground:
            return UpResult(_start_detached(project, name, run_dir, lock, timeout_s, policy), notes=notes)
        supervisor = Supervisor(plan, launches, run_dir, project.file, policy=policy, start_timeout_s=timeout_s,
                                cwd=project.root, reload=lambda: planned(project, name),
                                routes=routes_file(project.layout, plan))
        for note in notes:  # foreground: the supervisor's event log is the output
            log.warning("%s", note)
        ready: list[RunnerState] = []

        def on_serving(state: RunnerState) -> None:
            ready.append(state)
            if on_ready is not None:
                on_ready(state)

        held, lock = lock, None  # the supervisor closes it
        code = supervisor.run(on_serving, lock=held)
        if code != 0:
            error = supervisor.state().error
            run_dir.clear()
            raise _start_failure(name, error, run_dir)
        return UpResult(ready[0] if ready else supervisor.state(), notes=notes)
    finally:
        if lock is not None:
            os.close(lock)


def _read_running(run_dir: RunDir, name: str) -> RunnerState | None:
    """The state of a deployment another process supervises; its file must be readable to
    join it (a supervisor of another ViLMS version writes a file this one refuses)."""
    try:
        return run_dir.read()
    except InvalidInputError as exc:
        raise ActionError(f"deployment {name} is supervised, but its state file cannot be read:\n"
                          + unreadable_text(exc),
                          hint=f"stop it with `vilms down {name}` (that works without the state file), "
                               f"then `vilms up {name}`") from None


def _await_other_start(run_dir: RunDir, name: str, timeout_s: float) -> RunnerState:
    """Wait for a start (or stop) another command is running: its state once serving, else an error."""
    limit = 2 * timeout_s + 30  # servers, then the gateway, each within timeout_s
    deadline = time.monotonic() + limit
    while True:
        state = _read_running(run_dir, name)
        supervised = run_dir.supervised()
        if supervised and state is not None and state.status == "running":
            return state
        status = state.status if state is not None else None
        if not supervised or status in ("failed", "stopping"):
            raise ActionError(f"deployment {name} was being {'stopped' if status == 'stopping' else 'started'} "
                              "by another command, and it is not running",
                              hint=f"see `vilms status {name}` and the logs in {run_dir.logs}; then `vilms up {name}`")
        if time.monotonic() > deadline:
            raise ActionError(f"deployment {name} is still starting after {limit:.0f} s",
                              hint=f"see `vilms status {name}` and the logs in {run_dir.logs}")
        time.sleep(0.1)


def _apply_new_build(project: Project, name: str, running: RunnerState, timeout_s: float,
                     preflight: Preflight) -> UpResult:
    """Check the new build as a start would, then have the running supervisor apply it and
    wait until every process serves it. Only processes whose command line changed restart."""
    plan, launches = planned(project, name)
    _check_environment(project, plan)
    ports = {p.port for p in running.processes}
    _check_ports([launch for launch in launches if launch.port not in ports])
    servers = tuple(p.pid for p in running.processes if p.kind != GATEWAY and p.pid is not None)
    preflight_check(project, plan, Preflight(preflight.ignore_memory, preflight.meminfo, preflight.proc, servers))
    me = running.supervisor
    if not processes.alive(me.pid, me.ticks):
        raise ActionError(f"the supervisor of deployment {name} is gone", hint=f"vilms up {name}")
    os.kill(me.pid, RELOAD_SIGNAL)
    want = _build_of(project, plan)
    run_dir = project.run_dir(name)
    limit = timeout_s + 30
    deadline = time.monotonic() + limit
    while True:
        state = _read_running(run_dir, name)
        if state is None or not run_dir.supervised():
            raise ActionError(f"deployment {name} stopped while applying the new build",
                              hint=f"see the logs in {run_dir.logs}; then `vilms up {name}`")
        if (state.plan_sha256, state.routes_sha256) == want:
            failed = [p for p in state.processes if p.state == "failed"]
            if failed:
                raise ActionError(f"deployment {name} runs the new build, but {failed[0].name} failed to start",
                                  hint=f"see {failed[0].log}; fix the cause, `vilms build`, then `vilms up {name}`")
            if all(p.state == "running" for p in state.processes):
                before = {p.name: (p.pid, p.ticks) for p in running.processes}
                restarted = tuple(p.name for p in state.processes if before.get(p.name) != (p.pid, p.ticks))
                return UpResult(state, restarted=restarted,
                                notes=tuple(launch.note for launch in launches if launch.note))
        if time.monotonic() > deadline:
            raise ActionError(f"deployment {name} did not serve the new build within {limit:.0f} s",
                              hint=f"see `vilms status {name}` and the logs in {run_dir.logs}")
        time.sleep(0.1)


def _build_of(project: Project, plan: LocalPlan) -> tuple[str, str | None]:
    """What a supervisor records of the build it runs: the plan's sha256 and its routes'."""
    return built_sha256(project.layout, plan)


def _check_installed() -> None:
    missing = sorted({pkg for module, pkg in _NEEDS.items() if importlib.util.find_spec(module) is None})
    if missing:
        raise ActionError(f"the local runner needs {', '.join(missing)}, which is not installed",
                          hint="pip install 'vilms[serve]'")


def _check_environment(project: Project, plan: LocalPlan) -> None:
    """The gateway refuses to start without the keys its routes name; say so before any
    model loads. Only names are read, never values. A broken routes file is reported here,
    located, before anything starts."""
    routes = ROUTES.load(routes_file(project.layout, plan))
    names = [*routes.gateway.secret_envs] + [b.api_key_env for b in routes.backends.values()]
    unset = sorted({n for n in names if n is not None and n != llamacpp.ENGINE_KEY_ENV  # `up` sets it
                    and not os.environ.get(n, "").strip()})
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
                    policy: RestartPolicy) -> RunnerState:
    run_dir.ensure()
    argv = [sys.executable, "-m", "vilms", "supervise", "--file", str(project.file), "--deployment", name,
            "--lock-fd", str(lock), "--timeout", repr(timeout_s), "--restart-backoff", repr(policy.backoff_s),
            "--give-up-after", str(policy.give_up_after)]
    supervisor_log = run_dir.log("supervisor")
    rotate(supervisor_log)  # the previous run's log is supervisor.log.1
    with open(supervisor_log, "ab") as out:  # O_APPEND: the log may be rotated under it
        # a session of its own: it outlives this command and no terminal signal reaches it;
        # it inherits the locked descriptor, so the lock passes to it without a gap
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=project.root, start_new_session=True, pass_fds=(lock,))
    deadline = time.monotonic() + 2 * timeout_s + 30  # servers, then the gateway, each within timeout_s
    try:
        while True:
            if time.monotonic() > deadline:  # the supervisor enforces the timeouts; this is a backstop
                proc.send_signal(signal.SIGTERM)
            code = proc.poll()
            state = run_dir.read()  # written by the supervisor just started: this version's
            mine = state is not None and state.supervisor.pid == proc.pid
            if state is not None and mine and state.status == "running" and code is None:
                return state
            if code is not None:
                error = state.error if state is not None and mine else None
                run_dir.clear()  # this command still holds the lock: nobody else wrote it
                if error is None:
                    error = StartError(process="supervisor", message=f"exited with code {code}",
                                       log=str(run_dir.log("supervisor")))
                raise _start_failure(name, error, run_dir)
            time.sleep(0.1)
    except (KeyboardInterrupt, InvalidInputError):
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        run_dir.clear()
        raise


def _start_failure(name: str, error: StartError | None, run_dir: RunDir) -> ActionError:
    error = error or StartError(process="?", message="failed", log=str(run_dir.log("supervisor")))
    log = Path(error.log)
    text = f"deployment {name} did not start: {error.process} {error.message}"
    why = log_cause.cause(log)  # the line of its log that names the cause, not its traceback
    if why:
        text += f"\n{error.process}: {why}"
    return ActionError(text, hint=f"nothing was left running; full log: {log}")
