"""Deploy what `vilms build` wrote, per target (the `vilms apply` command is in ``vilms.cli``).

Apply never compiles anew: it refuses unless ``generated/`` is exactly what ``vilms.yaml``
compiles to (as ``vilms build --check``), so what runs is what was reviewed. Per target:

* ``compose``: ``docker compose --file generated/<dep>/docker-compose.yaml up --detach
  --remove-orphans --wait`` (the file names its project, ``<project>-<dep>``);
* ``helm``: ``helm upgrade --install <project>-<dep> generated/<dep>/helm --wait
  --timeout 15m`` in the current kube context and namespace;
* ``local``: ``vilms up <dep>``: it starts the deployment, or has its running supervisor
  apply the new build, restarting only the llama.cpp servers whose command line changed
  (a server loads its model and adapters only when it starts).

Secrets stay references: compose and Helm read them from the environment and the cluster.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler import layout
from vilms.compiler.errors import ActionError, UsageError
from vilms.compiler.suggest import did_you_mean

HELM_TIMEOUT = "15m"
VILMS = ("vilms",)  # how the steps name this program; run as `python -m vilms`


@dataclass(frozen=True)
class Step:
    deployment: str
    target: str
    commands: tuple[tuple[str, ...], ...]
    tool: str  # the program the commands need


def plan_apply(file: Path, only: list[str] | None) -> list[Step]:
    """The commands for each selected deployment (every one when ``only`` is None), after
    checking generated/ is current."""
    from vilms.compiler.pipeline import build

    plan = build(file, check=True).plan  # raises StaleOutputError naming each drifted file
    deployments = plan.deployments
    for name in only or ():
        if name not in deployments:
            raise UsageError(f"no deployment {name!r} in {file}{did_you_mean(name, deployments)}",
                             hint=f"deployments: {', '.join(sorted(deployments))}")
    names = list(only) if only else sorted(deployments)
    return [_step(plan.project, name, deployments[name].target, file) for name in names]


def _step(project: str, name: str, target: str, file: Path) -> Step:
    if target == "compose":
        return Step(name, target, (("docker", "compose", "--file", str(Path(layout.GENERATED, layout.compose_path(name))),
                                    "up", "--detach", "--remove-orphans", "--wait"),), "docker")
    if target == "helm":
        return Step(name, target, (("helm", "upgrade", "--install", f"{project}-{name}",
                                    str(Path(layout.GENERATED, layout.helm_dir(name))), "--wait", "--timeout", HELM_TIMEOUT),),
                    "helm")
    return Step(name, target, ((*VILMS, "up", name, "-f", file.name),), "vilms")


def run_step(step: Step, root: Path, echo: Callable[[str], None]) -> None:
    """Run ``step``'s commands in ``root`` (the folder of the real vilms.yaml), echoing each."""
    for command in step.commands:
        argv = list(command)
        if argv[0] == VILMS[0]:
            argv = [sys.executable, "-m", "vilms", *argv[1:]]
        elif shutil.which(argv[0]) is None:
            raise ActionError(f"cannot apply {step.deployment}: `{argv[0]}` is not installed",
                              hint="install Docker Compose v2" if step.tool == "docker" else "install Helm 3")
        echo(f"$ {shlex.join(command)}")
        result = subprocess.run(argv, cwd=root)
        if result.returncode != 0:
            raise ActionError(f"applying {step.deployment} failed: `{shlex.join(command)}` exited {result.returncode}",
                              hint="its output is above; fix the cause and run `vilms apply` again")
