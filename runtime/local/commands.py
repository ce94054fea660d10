"""`vilms up`, `vilms status`, `vilms down`: the local runner's click commands.

Thin: parse options, call :mod:`.runner`, print. Errors propagate to the CLI boundary.
Exit codes: up 0 when serving (or already serving the same build), 1 when it could not
start; status 0 when every process is running and answers its health URL, else 1
(stopped included); down 0 when nothing runs afterwards (also when nothing ran).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from vilms.compiler.cli import FILE_OPTION

DEPLOYMENT = click.argument("deployment", required=False)


@click.command("up")
@DEPLOYMENT
@FILE_OPTION
@click.option("--foreground", is_flag=True, help="Stay attached and log supervisor events; Ctrl-C stops everything.")
@click.option("--timeout", type=click.FloatRange(min=1), default=120, show_default=True,
              help="Seconds each process may take to answer its health URL.")
@click.option("--restart-backoff", type=click.FloatRange(min=0.01), default=0.5, hidden=True)
@click.option("--give-up-after", type=click.IntRange(min=1), default=5, hidden=True)
def up(deployment: str | None, file: Path, foreground: bool, timeout: float, restart_backoff: float, give_up_after: int) -> None:
    """Start DEPLOYMENT (target local): llama.cpp servers and the gateway, supervised.

    DEPLOYMENT may be left out when only one deployment has target local.
    """
    from .policy import RestartPolicy
    from .runner import up as start
    from .supervisor import configure_logging

    policy = RestartPolicy(backoff_s=restart_backoff, give_up_after=give_up_after)
    if foreground:
        configure_logging()

        def ready(state: dict[str, Any]) -> None:
            _print_up(state)
            click.echo("running in the foreground; Ctrl-C stops everything")

        result = start(file, deployment, foreground=True, timeout_s=timeout, policy=policy, on_ready=ready)
        click.echo(f"stopped deployment {result.state.get('deployment', deployment)}")
        return
    result = start(file, deployment, timeout_s=timeout, policy=policy)
    if result.already_running:
        state = result.state
        click.echo(f"deployment {state.get('deployment', deployment)} is already {state.get('status', 'running')}"
                   + (f" (since {state['started_at']})" if state.get("started_at") else ""))
    _print_up(result.state)


def _print_up(state: dict[str, Any]) -> None:
    rows = [("NAME", "URL", "PID")]
    rows += [(p["name"], p["url"], str(p["pid"] or "-")) for p in state.get("processes") or []]
    click.echo(_table(rows))
    stop = f"vilms down {state.get('deployment')}"
    project = state.get("project")
    if project and Path(project) != Path("vilms.yaml").absolute():
        stop += f" -f {_shown(project)}"
    if state.get("gateway_url"):
        click.echo(f"gateway: {state['gateway_url']}/v1   logs: {_shown(state.get('logs'))}/   stop: {stop}")


@click.command("status")
@DEPLOYMENT
@FILE_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(deployment: str | None, file: Path, fmt: str) -> None:
    """Show each process of a local deployment: state, pid, port, health, restarts.

    Exits 0 when every process runs and answers its health URL, 1 otherwise.
    """
    from .runner import status as report_status

    report = report_status(file, deployment)
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    elif report.deployment is None:
        click.echo("no local deployment is built or running")
    else:
        head = f"deployment {report.deployment}: {report.status}"
        if report.status != "stopped":
            head += ", healthy" if report.healthy else ", NOT healthy"
            state = report.state or {}
            pid = (state.get("supervisor") or {}).get("pid")
            head += f" (supervisor pid {pid}" + (f", since {state['started_at']})" if state.get("started_at") else ")")
        elif report.stale_cleaned:
            head += " (its supervisor had died; stale state cleaned)"
        click.echo(head)
        if report.processes:
            rows = [("NAME", "STATE", "PID", "PORT", "HEALTH", "RESTARTS")]
            rows += [(p["name"], p["state"], str(p["pid"] or "-"), str(p["port"]), p["health"] or "-", str(p["restarts"]))
                     for p in report.processes]
            click.echo(_table(rows))
    if not report.healthy:
        sys.exit(1)


@click.command("down")
@DEPLOYMENT
@FILE_OPTION
@click.option("--timeout", type=click.FloatRange(min=1), default=60, show_default=True,
              help="Seconds to wait for an orderly stop before killing.")
def down(deployment: str | None, file: Path, timeout: float) -> None:
    """Stop a local deployment: the gateway first (it drains), then the llama.cpp servers."""
    from .runner import down as stop

    result = stop(file, deployment, timeout_s=timeout)
    if result.deployment is None:
        click.echo("no local deployment is running")
    elif not result.stopped:
        click.echo(f"deployment {result.deployment} is not running"
                   + ("; cleaned the stale state its dead supervisor left" if result.stale_cleaned else ""))
    else:
        click.echo(f"stopped deployment {result.deployment}: {', '.join(result.stopped)}"
                   + (" (killed after the timeout)" if result.killed else ""))


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _shown(path: str | None) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    if not path:
        return "-"
    cwd = Path.cwd()
    if cwd.parent == cwd:  # relative to / reads like a typo
        return path
    try:
        return str(Path(path).relative_to(cwd))
    except ValueError:
        return path
