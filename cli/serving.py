"""Serving commands: serve (the gateway), up / status / down / restart / logs (the local runner)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from vilms.compiler.errors import ExitCode, UsageError
from vilms.compiler.facts import gateway as gateway_facts
from vilms.compiler.layout import Layout, routes_path

from .exits import exit_with
from .options import DEPLOYMENT, FILE, FILE_LONG_ONLY, output_format
from .paths import shown

if TYPE_CHECKING:
    from vilms.compiler.contracts.runner_state import RunnerState
    from vilms.runtime.local.status import Report as StatusReport


@click.command()
@click.option("--deployment", help="Serve generated/DEPLOYMENT/gateway/routes.yaml (beside -f FILE).")
@click.option("--routes", "routes_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Serve this routes file instead (containers mount it from a ConfigMap).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=gateway_facts.PORT, show_default=True)
@click.option("--quiet", is_flag=True, help="No per-request log lines.")
@FILE
def serve(deployment: str | None, routes_file: Path | None, host: str, port: int, quiet: bool, file: Path) -> None:
    """Run the OpenAI-compatible gateway for a deployment (reads its compiled routes.yaml)."""
    if (deployment is None) == (routes_file is None):
        raise UsageError("give either --deployment NAME or --routes FILE")
    if routes_file is None:
        assert deployment is not None
        project = Layout.of(file)
        routes_file = project.routes(deployment)
        if not routes_file.is_file():
            built = sorted(p.parent.parent.name for p in project.generated.glob(routes_path("*")))
            raise UsageError(f"no routes for deployment {deployment!r}: {routes_file} does not exist",
                             hint=f"deployments built: {', '.join(built)}" if built else "run `vilms build` first")
    if quiet:
        logging.getLogger("vilms.gateway.access").setLevel(logging.WARNING)
    from vilms.runtime.gateway.server import run

    run(routes_file, host=host, port=port)


@click.command()
@DEPLOYMENT
@FILE
@click.option("--foreground", is_flag=True, help="Stay attached and log supervisor events; Ctrl-C stops everything.")
@click.option("--timeout", type=click.FloatRange(min=1), default=120, show_default=True,
              help="Seconds each process may take to answer its health URL.")
@click.option("--ignore-memory", is_flag=True, help="Start even when the memory estimate exceeds MemAvailable.")
@click.option("--install-service", is_flag=True,
              help="Write a systemd unit that runs this deployment (started at boot once enabled); start nothing.")
@click.option("--system", is_flag=True, help="With --install-service: a system unit in /etc/systemd/system.")
@click.option("--restart-backoff", type=click.FloatRange(min=0.01), default=0.5, hidden=True)
@click.option("--give-up-after", type=click.IntRange(min=1), default=5, hidden=True)
def up(deployment: str | None, file: Path, foreground: bool, timeout: float, ignore_memory: bool,
       install_service: bool, system: bool, restart_backoff: float, give_up_after: int) -> None:
    """Start DEPLOYMENT (target local): llama.cpp servers and the gateway, supervised.

    When it already runs an older build, apply the new one: only the processes whose
    command line changed restart. DEPLOYMENT may be left out when only one deployment has
    target local.
    """
    from vilms.runtime.local.policy import RestartPolicy
    from vilms.runtime.local.preflight import Preflight
    from vilms.runtime.local.start import up as start
    from vilms.runtime.local.supervisor import configure_logging

    if system and not install_service:
        raise UsageError("--system goes with --install-service", hint="vilms up DEPLOYMENT --install-service --system")
    if install_service:
        _install_service(file, deployment, system)
        return
    policy = RestartPolicy(backoff_s=restart_backoff, give_up_after=give_up_after)
    checks = Preflight(ignore_memory=ignore_memory)
    if foreground:
        configure_logging()

        def ready(state: RunnerState) -> None:
            _print_up(state)
            click.echo("running in the foreground; Ctrl-C stops everything")

        result = start(file, deployment, foreground=True, timeout_s=timeout, policy=policy, on_ready=ready,
                       preflight=checks)
        click.echo(f"stopped deployment {result.state.deployment}")
        return
    result = start(file, deployment, timeout_s=timeout, policy=policy, preflight=checks)
    state = result.state
    if result.healed:
        click.echo(f"deployment {state.deployment}: restarted {', '.join(result.healed)}, which had failed")
    elif result.already_running:
        click.echo(f"deployment {state.deployment} is already {state.status} (since {state.started_at})")
    elif result.restarted is not None:
        what = f"restarted {', '.join(result.restarted)}" if result.restarted else "no process needed a restart"
        click.echo(f"deployment {state.deployment} now runs the new build: {what}")
    _print_up(state)
    for note in result.notes:
        click.echo(f"note: {note}")


def _install_service(file: Path, deployment: str | None, system: bool) -> None:
    from vilms.runtime.local.service_unit import install_service

    unit = install_service(file, deployment, system=system)
    click.echo(f"wrote {unit.path}")
    if unit.env_names:
        click.echo(f"put {', '.join(f'{n}=...' for n in unit.env_names)} in {unit.env_file} "
                   f"(one per line, chmod 600); the unit reads the keys from there")
    else:
        click.echo(f"create {unit.env_file} (chmod 600; empty is fine: the gateway reads no key)")
    click.echo("then enable it (vilms starts nothing):")
    for command in unit.commands:
        click.echo(f"  {command}")


def _print_up(state: RunnerState) -> None:
    rows = [("NAME", "URL", "PID")]
    rows += [(p.name, p.url, str(p.pid or "-")) for p in state.processes]
    click.echo(_table(rows))
    stop = f"vilms down {state.deployment}"
    if Path(state.project) != Path("vilms.yaml").absolute():
        stop += f" -f {shown(state.project)}"
    if state.gateway_url:
        click.echo(f"gateway: {state.gateway_url}/v1   logs: {shown(state.logs)}/   stop: {stop}")


@click.command()
@DEPLOYMENT
@FILE
@output_format("text", "json")
def status(deployment: str | None, file: Path, fmt: str) -> None:
    """Show each process of a local deployment: state, pid, port, health, restarts. For a
    compose or Helm DEPLOYMENT: its manifest hash in generated/ next to what the engine reports.

    Exits 0 when every process runs and answers its health URL, 1 otherwise.
    """
    from vilms.runtime.local.status import status as report_status

    from .deployed import show

    if deployment is not None and show(file, deployment, fmt):
        return

    report = report_status(file, deployment)
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    elif report.deployment is None:
        click.echo("no local deployment is built or running")
    else:
        click.echo(_status_head(report))
        seen = report.seen
        if seen is not None and seen.problem is not None:
            if seen.supervised:
                click.echo(f"its state file cannot be read (`vilms down {report.deployment}` still stops it):")
            else:
                click.echo("its state file could not be read, and was removed:")
            click.echo(_indent(seen.problem))
        if report.processes:
            rows = [("NAME", "STATE", "PID", "PORT", "HEALTH", "RESTARTS", "UPTIME", "RSS", "LAST EXIT")]
            rows += [(p.name, p.state, str(p.pid or "-"), str(p.port), p.health or "-", str(p.restarts),
                      _duration(p.uptime_s), f"{p.rss_kib // 1024} MiB" if p.rss_kib is not None else "-",
                      p.exit_reason or "-") for p in report.processes]
            click.echo(_table(rows))
            for p in report.processes:
                if p.model is not None:
                    click.echo(f"{p.name} serves {p.model}" + (f" with adapters {', '.join(p.adapters)}" if p.adapters else ""))
        for line in _what_to_do(report):
            click.echo(line)
    if not report.healthy:
        exit_with(ExitCode.FAILED)


@click.command()
@DEPLOYMENT
@FILE
@click.option("--timeout", type=click.FloatRange(min=1), default=60, show_default=True,
              help="Seconds to wait for an orderly stop before killing.")
def down(deployment: str | None, file: Path, timeout: float) -> None:
    """Stop a local deployment: the gateway first (it drains), then the llama.cpp servers."""
    from vilms.runtime.local.stop import down as stop

    result = stop(file, deployment, timeout_s=timeout)
    if result.deployment is None:
        click.echo("no local deployment is running")
    elif not result.was_running:
        click.echo(f"deployment {result.deployment} is not running"
                   + ("; cleaned the stale state its dead supervisor left" if result.stale_cleaned else ""))
    else:
        click.echo(f"stopped deployment {result.deployment}" + (f": {', '.join(result.stopped)}" if result.stopped else "")
                   + (" (killed after the timeout)" if result.killed else ""))
    if result.problem is not None:
        click.echo("its state file could not be read, and was removed:\n" + _indent(result.problem))


@click.command(hidden=True)
@click.option("--deployment", required=True)
@FILE
@click.option("--lock-fd", type=int, default=None, help="The run's lock, taken by `vilms up` and inherited.")
@click.option("--timeout", type=float, required=True, help="Seconds each process may take to serve.")
@click.option("--restart-backoff", type=float, required=True)
@click.option("--give-up-after", type=int, required=True)
def supervise(deployment: str, file: Path, lock_fd: int | None, timeout: float, restart_backoff: float,
              give_up_after: int) -> None:
    """The detached supervisor `vilms up` starts: runs until SIGTERM (`vilms down`); exits 1 when the
    start failed (the error is in state.json for `vilms up`). Its log is .vilms/run/<deployment>/logs/supervisor.log."""
    from vilms.runtime.local.supervisor import supervise_deployment

    code = supervise_deployment(file, deployment, lock_fd=lock_fd, timeout_s=timeout,
                                backoff_s=restart_backoff, give_up_after=give_up_after)
    if code:
        exit_with(ExitCode.FAILED)


def _what_to_do(report: StatusReport) -> list[str]:
    from vilms.runtime.local.status import OLDER_BUILD

    lines = []
    if report.build == OLDER_BUILD:
        lines.append(f"{OLDER_BUILD} than generated/ holds: `vilms up {report.deployment}` applies it "
                     "(restarts only the processes whose parameters changed)")
    failed = [p.name for p in report.processes if p.state == "failed"]
    if failed:
        lines.append(f"failed: {', '.join(failed)}; see `vilms logs {failed[0]}`, fix the cause, then "
                     f"`vilms up {report.deployment}` or `vilms restart {failed[0]}`")
    return lines


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _status_head(report: StatusReport) -> str:
    head = f"deployment {report.deployment}: {report.status}"
    seen = report.seen
    if seen is not None and seen.supervised:
        head += ", healthy" if report.healthy else ", NOT healthy"
        head += f" (supervisor pid {seen.supervisor_pid or '?'}"
        head += f", since {seen.state.started_at})" if seen.state is not None else ")"
    elif seen is not None and seen.stale_cleaned:
        head += " (its supervisor had died; stale state cleaned)"
    return head


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


@click.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--deployment", "-d", help="The local deployment (needed when several run).")
@FILE
@click.option("--timeout", type=click.FloatRange(min=1), default=120, show_default=True,
              help="Seconds each process may take to answer its health URL again.")
def restart(names: tuple[str, ...], deployment: str | None, file: Path, timeout: float) -> None:
    """Restart processes of a running local deployment (every process without NAME); a failed one starts again."""
    from vilms.runtime.local.restart import restart as run_restart

    result = run_restart(file, deployment, names, timeout_s=timeout)
    click.echo(f"deployment {result.deployment}: restarted {', '.join(result.restarted)}")
    _print_up(result.state)


@click.command()
@click.argument("name", required=False)
@click.option("--deployment", "-d", help="The local deployment (needed when several are built).")
@FILE_LONG_ONLY
@click.option("--follow", "-f", "follow", is_flag=True, help="Keep printing new lines (across rotation) until Ctrl-C.")
@click.option("--lines", "-n", type=click.IntRange(min=0), default=40, show_default=True, help="Last lines to print first.")
def logs(name: str | None, deployment: str | None, file: Path, follow: bool, lines: int) -> None:
    """Print the last lines of a local deployment's logs: process NAME, or all of them (and the supervisor's)."""
    from vilms.runtime.local.logview import log_files, print_logs

    files = log_files(file, deployment, name)
    try:
        print_logs(files, lines=lines, follow=follow, echo=click.echo)
    except KeyboardInterrupt:
        exit_with(ExitCode.INTERRUPTED)


COMMANDS = (serve, up, status, down, supervise, restart, logs)
