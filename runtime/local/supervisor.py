"""The supervisor: start a local plan's processes in order, keep them running, stop them in order.

Start: every llama.cpp server at once, then wait until each answers its health URL; then
the gateway, and wait for its readiness probe. If any process exits or stays silent past the
start timeout, everything started so far is stopped and the run fails (no restarts while
starting: a model that cannot load would only crash again).

Run: a child that exits is restarted after the backoff of :class:`RestartPolicy` (capped);
one that served is always restarted, one whose starts never answered its health URL too many
times in a row is marked failed and left down (the others keep serving) until `vilms up` or
`vilms restart`. A serving child whose health probe keeps failing (hung, SIGSTOPped) has its
process group SIGKILLed and restarts. A restarted child counts as running again once its health
URL answers. Each exit leaves its reason in the state (``exit_reason``).

Restart (SIGUSR2, sent by `vilms restart` and by `vilms up` for failed processes): the names in
the run folder's restart request (:attr:`RunDir.restart_file`; all when it names none) are
stopped and started again, their failure counts reset.

Routes: the gateway serves the run folder's copy of the routes (:attr:`RunDir.routes_file`),
which only the supervisor writes, so `vilms build` alone changes nothing that runs: a slot in
the routes always names the adapter the running llama-server loaded there.

New build (SIGUSR1, sent by `vilms up` when local.yaml or the routes changed): the plan and the
routes are read again; the processes whose command line changed, and removed ones, are stopped
(a llama.cpp server loads its adapters only at start); then the routes copy is swapped (and
the gateway told at once, SIGHUP); then the changed and new processes start. The others keep
serving. At no moment does the gateway hold routes whose slots disagree with a running server.

A llama-server with adapters must report them loaded in the plan's slot order (``GET
/lora-adapters``) before it counts as serving; a mismatch fails its start.

Stop (SIGTERM, SIGINT or SIGHUP to the supervisor): the gateway first, which drains its
in-flight requests, then the llama.cpp servers; each gets SIGTERM, then SIGKILL after a
grace period. The state file is removed on a clean stop and kept (with the error) when
the start failed, for `vilms up` to report.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler.clock import utc_now
from vilms.compiler.contracts.local_plan import LocalPlan
from vilms.compiler.contracts.routes import ROUTES
from vilms.compiler.contracts.runner_state import ProcessId, ProcessState, RunnerState, StartError
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.compiler.facts import llamacpp
from vilms.runtime.logs import log_to_stderr

from . import engine_key, processes
from .health import lora_adapters, probe
from .launch import GATEWAY, Launch
from .logfiles import rotate, rotate_if_large
from .plan import plan_sha256, routes_sha256
from .policy import RestartPolicy
from .state import RunDir

log = logging.getLogger("vilms.local")

START_TIMEOUT_S = 120.0
GATEWAY_GRACE_S = 35.0  # the gateway drains for up to 30 s
SERVER_GRACE_S = 10.0
TICK_S = 0.1
LOG_CHECK_S = 10.0  # how often logs are checked for rotation
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
RELOAD_SIGNAL = signal.SIGUSR1  # apply a new build of the plan
RESTART_SIGNAL = signal.SIGUSR2  # restart the processes the run folder's restart request names
RESTARTED_BY_USER = "restarted by `vilms restart`"
Planned = Callable[[], tuple[LocalPlan, Sequence[Launch]]]  # reads the plan again: it and its command lines


@dataclass
class Child:
    launch: Launch
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    ticks: int | None = None
    status: str = "starting"  # starting | running | restarting | failed | stopped
    restarts: int = 0
    streak: int = 0  # quick exits in a row (backoff)
    unhealthy: int = 0  # starts in a row that never served (give up)
    started_mono: float = 0.0
    started_at: str | None = None
    restart_at: float = 0.0
    ready_by: float = 0.0
    last_exit: int | None = None
    served: bool = False  # answered its health URL since its last start
    exit_reason: str | None = None
    probe_at: float = 0.0
    probe_failures: int = 0

    def state(self) -> ProcessState:
        launch = self.launch
        return ProcessState(name=launch.name, kind=launch.kind, host=launch.host, port=launch.port, url=launch.url,
                            health_url=launch.health_url, pid=self.proc.pid if self.proc else None,
                            ticks=self.ticks if self.proc else None, state=self.status, restarts=self.restarts,
                            started_at=self.started_at, last_exit=self.last_exit, exit_reason=self.exit_reason,
                            log=str(self.log_path))


class Supervisor:
    def __init__(self, plan: LocalPlan, launches: Sequence[Launch], run_dir: RunDir, project_file: Path, *,
                 policy: RestartPolicy | None = None, start_timeout_s: float = START_TIMEOUT_S,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None, reload: Planned | None = None,
                 routes: Path | None = None) -> None:
        """``routes``: the built routes file (generated/), copied into the run folder for the
        gateway when it starts and each time a build is applied; None: no copy (no gateway)."""
        self.plan = plan
        self.routes = routes
        self.routes_sha256: str | None = None
        self.plan_sha256 = plan_sha256(plan)
        self.run_dir = run_dir
        self.project_file = project_file
        self.policy = policy or RestartPolicy()
        self.start_timeout_s = start_timeout_s
        self.env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
        self.cwd = cwd
        self.children = [Child(launch, run_dir.log(launch.name)) for launch in launches]
        self.status = "starting"
        self.started_at = utc_now()
        self.error: StartError | None = None
        self.stopping = False
        self.reload = reload
        self._reload_asked = False
        self._restart_asked = False
        self._written: RunnerState | None = None
        self._logs_checked = 0.0
        self._me = ProcessId(os.getpid(), processes.start_ticks(os.getpid()))

    # -- the whole life --------------------------------------------------------------

    def run(self, on_ready: Callable[[RunnerState], None] | None = None, *, lock: int | None = None) -> int:
        """Start, supervise until a stop signal, stop. Returns 0, or 1 when the start failed.

        ``lock``: the run's lock, already taken by the caller (the descriptor is closed on
        return); without it the supervisor takes the lock itself."""
        if lock is None:
            lock = self.run_dir.acquire()
            if lock is None:
                raise ActionError(f"deployment {self.plan.deployment} is already supervised (lock {self.run_dir.lock_file})")
        self.run_dir.claim(lock)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        previous[RELOAD_SIGNAL] = signal.signal(RELOAD_SIGNAL, self._on_reload)
        previous[RESTART_SIGNAL] = signal.signal(RESTART_SIGNAL, self._on_restart)
        try:
            self.run_dir.ensure()
            for child in self.children:
                rotate(child.log_path)  # each `vilms up` starts a fresh log; the previous run's is .1
            if self.routes is not None and not self._copy_routes(self.routes):  # before the gateway starts on it
                self.status = "failed"
                self._write()
                return 1
            try:
                if self._start_all():
                    self.status = "running"
                    self._write()
                    log.info("deployment %s is up", self.plan.deployment)
                    if on_ready is not None:
                        on_ready(self.state())
                    while not self.stopping:
                        if self._reload_asked:
                            self._reload_asked = False
                            self._apply_new_build()
                        if self._restart_asked:
                            self._restart_asked = False
                            self._restart_requested()
                        self._tick()
                        time.sleep(TICK_S)
            finally:  # also when something above raised: never leave a child behind
                self._stop_all()
            if self.error is not None:
                self.status = "failed"
                self._write()
                return 1
            self.run_dir.clear()
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(lock)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            log.info("%s received: stopping", signal.Signals(signum).name)
        self.stopping = True

    def _on_reload(self, _signum: int, _frame: object) -> None:
        self._reload_asked = True

    def _on_restart(self, _signum: int, _frame: object) -> None:
        self._restart_asked = True

    # -- start -----------------------------------------------------------------------

    def _start_all(self) -> bool:
        self._write()
        servers = [c for c in self.children if c.launch.kind != GATEWAY]
        gateway = [c for c in self.children if c.launch.kind == GATEWAY]
        for child in servers:
            self._spawn(child)
        if not self._await_ready(servers):
            return False
        for child in gateway:
            self._spawn(child)
        return self._await_ready(gateway)

    def _await_ready(self, children: list[Child]) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        waiting = list(children)
        while waiting:
            if self.stopping:
                self._fail(waiting[0], "interrupted while starting")
                return False
            for child in list(waiting):
                assert child.proc is not None
                code = child.proc.poll()
                if code is not None:
                    child.proc, child.ticks, child.last_exit, child.status = None, None, code, "failed"
                    _mark(child.log_path, f"exited with {_exit_text(code)} while starting")
                    self._fail(child, f"exited with {_exit_text(code)} while starting")
                    return False
                if probe(child.launch.health_url, timeout_s=1.0, headers=child.launch.probe_headers) is None:
                    wrong = _lora_mismatch(child.launch)
                    if wrong is not None:
                        self._fail(child, wrong)
                        return False
                    child.status = "running"
                    self._served(child, time.monotonic())
                    waiting.remove(child)
                    log.info("%s is ready at %s (pid %d)", child.launch.name, child.launch.url, child.proc.pid)
            if waiting and time.monotonic() > deadline:
                self._fail(waiting[0], f"did not answer {waiting[0].launch.health_url} within {self.start_timeout_s:g} s")
                return False
            if waiting:
                self._write()
                time.sleep(TICK_S)
        return True

    def _fail(self, child: Child, message: str) -> None:
        log.error("%s %s", child.launch.name, message)
        self.error = StartError(process=child.launch.name, message=message, log=str(child.log_path))

    # -- supervise -------------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._logs_checked >= LOG_CHECK_S:
            self._logs_checked = now
            for path in [c.log_path for c in self.children] + [self.run_dir.log("supervisor")]:
                if rotate_if_large(path):
                    log.info("rotated %s (the previous part is %s.1)", path.name, path.name)
        for child in self.children:
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                self._exited(child, now)
            elif proc is None and child.status == "restarting" and now >= child.restart_at:
                self._spawn(child)
                child.restarts += 1
                child.ready_by = now + self.start_timeout_s
            elif proc is not None and child.status in ("starting", "restarting"):
                if probe(child.launch.health_url, timeout_s=0.5, headers=child.launch.probe_headers) is None:
                    wrong = _lora_mismatch(child.launch)
                    if wrong is not None:  # would route adapters to the wrong slots: never serves
                        log.error("%s %s: stopped and marked failed", child.launch.name, wrong)
                        code = processes.stop(proc, SERVER_GRACE_S)
                        child.proc, child.ticks, child.last_exit, child.status = None, None, code, "failed"
                        _mark(child.log_path, wrong)
                        continue
                    log.info("%s is serving %s(pid %d, restart %d)", child.launch.name,
                             "again " if child.status == "restarting" else "", proc.pid, child.restarts)
                    child.status = "running"
                    self._served(child, now)
                elif now > child.ready_by:
                    log.error("%s did not answer %s within %g s after a restart", child.launch.name,
                              child.launch.health_url, self.start_timeout_s)
                    processes.stop(proc, SERVER_GRACE_S)
                    self._exited(child, now, reason=f"did not answer its health URL within {self.start_timeout_s:g} s")
            elif proc is not None and child.status == "running" and now >= child.probe_at:
                self._check_health(child)
        self._write()

    def _served(self, child: Child, now: float) -> None:
        child.served = True
        child.unhealthy = 0
        child.probe_failures = 0
        child.probe_at = now + self.policy.health_every_s

    def _check_health(self, child: Child) -> None:
        """Probe a serving child; after ``hung_after`` failures in a row, kill its group and restart it."""
        assert child.proc is not None
        why = probe(child.launch.health_url, timeout_s=self.policy.health_timeout_s)
        now = time.monotonic()
        child.probe_at = now + self.policy.health_every_s
        if why is None:
            child.probe_failures = 0
            return
        child.probe_failures += 1
        log.warning("%s health probe failed (%s), %d in a row", child.launch.name, why, child.probe_failures)
        if child.probe_failures < self.policy.hung_after:
            return
        reason = f"health probe failed {child.probe_failures} times ({why})"
        log.error("%s %s: killing its process group (pid %d)", child.launch.name, reason, child.proc.pid)
        processes.signal_group(child.proc.pid, signal.SIGKILL)  # a SIGSTOPped process ignores SIGTERM
        processes.signal_group(child.proc.pid, signal.SIGCONT)  # and dies only once it runs again
        self._exited(child, now, reason=reason)

    def _exited(self, child: Child, now: float, *, reason: str | None = None) -> None:
        assert child.proc is not None
        code = child.proc.wait()
        ran_for = now - child.started_mono
        served = child.served
        child.proc, child.ticks, child.last_exit, child.served = None, None, code, False
        child.exit_reason = reason or f"exited with {_exit_text(code)}"
        child.streak = self.policy.streak_after(child.streak, ran_for)
        _mark(child.log_path, f"{child.exit_reason} after {ran_for:.1f} s")
        if not served:
            child.unhealthy += 1
            if self.policy.gives_up(child.unhealthy):
                child.status = "failed"
                log.error("%s %s after %.1f s; %d starts in a row never served: marked failed, not restarted "
                          "(`vilms restart %s` or `vilms up` starts it again)", child.launch.name, child.exit_reason,
                          ran_for, child.unhealthy, child.launch.name)
                return
        delay = self.policy.delay(child.streak)
        child.status = "restarting"
        child.restart_at = now + delay
        log.warning("%s %s after %.1f s; restarting in %g s", child.launch.name, child.exit_reason, ran_for, delay)

    def _restart_requested(self) -> None:
        """Restart the processes the restart request names (all when it names none), now."""
        names = self.run_dir.take_restart_request()
        if names is None:
            return
        now = time.monotonic()
        for child in self.children:
            if names and child.launch.name not in names:
                continue
            if child.proc is not None:
                processes.stop(child.proc, GATEWAY_GRACE_S if child.launch.kind == GATEWAY else SERVER_GRACE_S)
                log.info("stopped %s (pid %d) to restart it", child.launch.name, child.proc.pid)
                child.proc, child.ticks = None, None
            _mark(child.log_path, RESTARTED_BY_USER)
            child.exit_reason = RESTARTED_BY_USER
            child.status, child.restart_at, child.streak, child.unhealthy, child.served = "restarting", now, 0, 0, False
        self._write()

    # -- a new build -------------------------------------------------------------------

    def _apply_new_build(self) -> None:
        """Read the plan again; restart what changed, start what is new, stop what is gone."""
        if self.reload is None:
            log.warning("%s received, but this supervisor cannot read its plan again", RELOAD_SIGNAL.name)
            return
        try:
            plan, launches = self.reload()
            routes = self._read_routes(self.routes) if self.routes is not None else None
        except (ActionError, InvalidInputError) as exc:
            log.error("the new build is not applied; still running the previous one: %s", exc.message)
            return
        current = {c.launch.name: c for c in self.children}
        children: list[Child] = []
        fresh: list[Child] = []
        for launch in launches:
            old = current.pop(launch.name, None)
            if old is not None and old.launch == launch:
                children.append(old)
                continue
            if old is not None:
                self._stop_child(old)
            child = Child(launch, self.run_dir.log(launch.name))
            children.append(child)
            fresh.append(child)
        for gone in current.values():
            self._stop_child(gone)
        self.children = children
        self.plan, self.plan_sha256 = plan, plan_sha256(plan)
        # every server whose adapters change is down now: swap the routes before any starts
        if routes is not None and self.run_dir.write_routes(routes):
            self.routes_sha256 = routes_sha256(routes)
            log.info("swapped the gateway's routes (%s)", self.run_dir.routes_file)
            for child in children:  # a running gateway reloads now, not at its next poll
                if child.launch.kind == GATEWAY and child.proc is not None and all(child is not f for f in fresh):
                    processes.signal_group(child.proc.pid, signal.SIGHUP)
        for child in fresh:  # watched by _tick until they answer, restarted if they crash
            self._spawn(child)
            child.ready_by = time.monotonic() + self.start_timeout_s
        log.info("applied a new build of %s: %s", self.plan.deployment,
                 f"started {', '.join(c.launch.name for c in fresh)}" if fresh else "nothing to restart")
        self._write()

    def _copy_routes(self, path: Path) -> bool:
        """The first copy of the routes; False (the start failed, nothing started) when the
        built file does not load (changed since `vilms up` checked it)."""
        try:
            data = self._read_routes(path)
        except (ActionError, InvalidInputError) as exc:
            log.error("the gateway's routes cannot be served:\n%s", exc.render())
            self.error = StartError(process=GATEWAY, message=f"cannot serve its routes: {exc.render()}",
                                    log=str(self.run_dir.log("supervisor")))
            return False
        self.run_dir.write_routes(data)
        self.routes_sha256 = routes_sha256(data)
        return True

    @staticmethod
    def _read_routes(path: Path) -> bytes:
        """The built routes file's bytes, once they load through their contract (raises, located)."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ActionError(f"cannot read {path}: {exc.strerror or exc}", hint="run `vilms build`") from None
        ROUTES.parse(data, str(path), file=path)
        return data

    def _stop_child(self, child: Child) -> None:
        if child.proc is not None:
            code = processes.stop(child.proc, GATEWAY_GRACE_S if child.launch.kind == GATEWAY else SERVER_GRACE_S)
            _mark(child.log_path, f"stopped for a new build (exit {_exit_text(code)})")
            log.info("stopped %s (pid %d) for a new build", child.launch.name, child.proc.pid)
            child.proc, child.ticks = None, None
        child.status = "stopped"

    def _spawn(self, child: Child) -> None:
        for path, content in child.launch.files:
            path.parent.mkdir(parents=True, exist_ok=True)
            engine_key.write_private(path, content)  # a server's config holds the engine key
        _mark(child.log_path, f"starting {child.launch.name}: {' '.join(child.launch.argv)}")
        with open(child.log_path, "ab") as out:
            child.proc = processes.spawn(child.launch.argv, log=out, env=child.launch.environment(self.env),
                                         cwd=self.cwd)
        child.ticks = processes.start_ticks(child.proc.pid)
        child.started_mono = time.monotonic()
        child.started_at = utc_now()
        if child.status != "restarting":
            child.status = "starting"
        log.info("started %s (pid %d)", child.launch.name, child.proc.pid)

    # -- stop ------------------------------------------------------------------------

    def _stop_all(self) -> None:
        self.status = "stopping"
        self._write()
        for group, grace in (([c for c in self.children if c.launch.kind == GATEWAY], GATEWAY_GRACE_S),
                             ([c for c in self.children if c.launch.kind != GATEWAY], SERVER_GRACE_S)):
            running = [c for c in group if c.proc is not None]
            for child in running:
                assert child.proc is not None
                if child.proc.poll() is None:
                    processes.signal_group(child.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in running:
                assert child.proc is not None
                code = processes.stop(child.proc, max(0.0, deadline - time.monotonic()))
                _mark(child.log_path, f"stopped (exit {_exit_text(code)})")
                log.info("stopped %s (pid %d)", child.launch.name, child.proc.pid)
                child.proc, child.ticks = None, None
            for child in group:
                child.status = "stopped" if child.status != "failed" else "failed"
            self._write()

    # -- state -----------------------------------------------------------------------

    def state(self) -> RunnerState:
        gateway = next((c for c in self.children if c.launch.kind == GATEWAY), None)
        return RunnerState(
            status=self.status,
            deployment=self.plan.deployment,
            project=str(self.project_file),
            plan_sha256=self.plan_sha256,
            routes_sha256=self.routes_sha256,
            started_at=self.started_at,
            gateway_url=gateway.launch.url if gateway else None,
            logs=str(self.run_dir.logs),
            supervisor=self._me,
            processes=tuple(c.state() for c in self.children),
            error=self.error,
        )

    def _write(self) -> None:
        state = self.state()
        if state != self._written:
            self.run_dir.write(state)
            self._written = state


def configure_logging() -> None:
    """Supervisor events as timestamped lines on stderr (supervisor.log when detached)."""
    log_to_stderr("vilms.local", "%(asctime)s %(levelname)s %(message)s")


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def _lora_mismatch(launch: Launch) -> str | None:
    """Why a llama-server does not serve the plan's adapters in slot order, or None when it does
    (or has none to check)."""
    if not launch.lora:
        return None
    url = launch.url + llamacpp.LORA_ADAPTERS_PATH
    loaded = lora_adapters(url, headers=launch.probe_headers)
    want = list(enumerate(launch.lora))
    if loaded != want:
        got = "an unreadable answer" if loaded is None else ", ".join(f"{i}={p}" for i, p in loaded) or "none"
        return (f"loaded other adapters than its plan: {url} reports {got}; the plan's slots are "
                + ", ".join(f"{i}={p}" for i, p in want))
    return None


def _mark(path: Path, text: str) -> None:
    """A line of the supervisor's own in a child's log."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"--- vilms {utc_now()}: {text}\n")


def supervise_deployment(file: Path, deployment: str, *, lock_fd: int | None, timeout_s: float, backoff_s: float,
                         give_up_after: int) -> int:
    """The detached supervisor of `vilms up` (command `vilms supervise`): read the same local.yaml
    the command checked and supervise until SIGTERM. Returns the exit code: 0 after an orderly
    stop, 1 when the start failed (the error is in state.json for `vilms up`)."""
    from .launch import planned
    from .plan import routes_file
    from .project import Project

    configure_logging()
    project = Project.at(file)
    plan, launches = planned(project, deployment)
    supervisor = Supervisor(plan, launches, project.run_dir(deployment), project.file,
                            policy=RestartPolicy(backoff_s=backoff_s, give_up_after=give_up_after),
                            start_timeout_s=timeout_s, cwd=project.root, reload=lambda: planned(project, deployment),
                            routes=routes_file(project.layout, plan))
    return supervisor.run(lock=lock_fd)

