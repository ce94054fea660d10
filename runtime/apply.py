"""`vilms apply [DEPLOYMENT] [--dry-run] [--yes]`: deploy what `vilms build` wrote.

Apply never compiles: it refuses unless ``generated/`` is exactly what ``vilms.yaml``
compiles to (as ``vilms build --check``), so what runs is what was reviewed. Per target:

* ``compose``: ``docker compose --file generated/<dep>/docker-compose.yaml up --detach
  --remove-orphans --wait`` (the file names its project, ``<project>-<dep>``);
* ``helm``: ``helm upgrade --install <project>-<dep> generated/<dep>/helm --wait
  --timeout 15m`` in the current kube context and namespace;
* ``local``: ``vilms up <dep>``; a deployment already running is stopped first, because a
  llama.cpp server loads its model and adapters only when it starts.

Secrets stay references: compose and Helm read them from the environment and the cluster.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from vilms.compiler.errors import ActionError, UsageError

HELM_TIMEOUT = "15m"


@dataclass(frozen=True)
class Step:
    deployment: str
    target: str
    commands: tuple[tuple[str, ...], ...]
    tool: str  # the program the commands need


@click.command("apply")
@click.argument("deployment", required=False)
@click.option("-f", "--file", "file", type=click.Path(path_type=Path, dir_okay=False), default=Path("vilms.yaml"),
              show_default=True, help="The vilms.yaml whose generated/ folder to deploy.")
@click.option("--dry-run", is_flag=True, help="Print the commands; run nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
def apply(deployment: str | None, file: Path, dry_run: bool, yes: bool) -> None:
    """Deploy generated/ for DEPLOYMENT (default: every deployment): compose, Helm or local."""
    apply_deployments(file, [deployment] if deployment else None, yes=yes, dry_run=dry_run)


def apply_deployments(file: Path, only: list[str] | None, *, yes: bool, dry_run: bool = False) -> None:
    """Print, confirm and run the commands for ``only`` (every deployment when None)."""
    steps = plan_apply(file, only)
    for step in steps:
        click.echo(f"{step.deployment} ({step.target}):")
        for command in step.commands:
            click.echo(f"  $ {shlex.join(command)}")
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("apply changes running systems and there is no terminal to confirm on",
                             hint="review with --dry-run, then pass --yes")
        click.confirm("Apply?", abort=True)
    root = file.resolve().parent  # where the compiler wrote generated/ (beside the real file)
    for step in steps:
        run_step(step, root)
    click.echo(f"applied {len(steps)} deployment{'s' if len(steps) != 1 else ''}")


def plan_apply(file: Path, only: list[str] | None) -> list[Step]:
    """The commands for each selected deployment, after checking generated/ is current."""
    from vilms.compiler.pipeline import build

    plan = build(file, check=True).plan  # raises StaleOutputError naming each drifted file
    deployments = plan.deployments
    for name in only or ():
        if name not in deployments:
            raise UsageError(f"no deployment {name!r} in {file}",
                             hint=f"deployments: {', '.join(sorted(deployments))}")
    names = list(only) if only else sorted(deployments)
    return [_step(plan.project, name, deployments[name].target, file) for name in names]


def _step(project: str, name: str, target: str, file: Path) -> Step:
    out = Path("generated") / name
    if target == "compose":
        return Step(name, target, (("docker", "compose", "--file", str(out / "docker-compose.yaml"), "up", "--detach",
                                    "--remove-orphans", "--wait"),), "docker")
    if target == "helm":
        return Step(name, target, (("helm", "upgrade", "--install", f"{project}-{name}", str(out / "helm"), "--wait",
                                    "--timeout", HELM_TIMEOUT),), "helm")
    vilms = ("vilms",)
    return Step(name, target, ((*vilms, "down", name, "-f", file.name), (*vilms, "up", name, "-f", file.name)), "vilms")


def run_step(step: Step, root: Path) -> None:
    for command in step.commands:
        argv = list(command)
        if argv[0] == "vilms":
            argv = [sys.executable, "-m", "vilms.compiler.cli", *argv[1:]]
        elif shutil.which(argv[0]) is None:
            raise ActionError(f"cannot apply {step.deployment}: `{argv[0]}` is not installed",
                              hint="install Docker Compose v2" if step.tool == "docker" else "install Helm 3")
        click.echo(f"$ {shlex.join(command)}")
        result = subprocess.run(argv, cwd=root)
        if result.returncode != 0:
            raise ActionError(f"applying {step.deployment} failed: `{shlex.join(command)}` exited {result.returncode}",
                              hint="its output is above; fix the cause and run `vilms apply` again")
