"""Deploy what `vilms build` wrote, per target (the `vilms apply` command is in ``vilms.cli``).

Apply never compiles anew: it refuses unless ``generated/`` is exactly what ``vilms.yaml``
compiles to (as ``vilms build --check``), so what runs is what was reviewed. Per target:

* ``compose``: ``docker compose --file generated/<dep>/docker-compose.yaml up --detach
  --remove-orphans --wait`` (the file names its project, ``<project>-<dep>``; it recreates
  only services whose definition changed); with engine ``ollama`` then the derived models
  (adapter aliases) on the running server, through its API (``runtime/ollama_sync.py``):
  a release or rollback creates the new model there, no container restarts;
* ``helm`` (Helm 4): ``helm upgrade --install <project>-<dep> generated/<dep>/helm
  [--kube-context C] [--namespace N --create-namespace] --rollback-on-failure --wait=watcher
  --timeout 15m --description "vilms manifest sha256:<hash>"``: a failed upgrade is rolled back
  (Helm 4 renamed Helm 3's ``--atomic`` to ``--rollback-on-failure``); context and namespace
  come from ``deployments.<d>.kube_context`` / ``namespace`` (else the current ones); the
  description records which build runs (``vilms status``);
* ``local``: ``vilms up <dep>``: it starts the deployment, or has its running supervisor
  apply the new build, restarting only the llama.cpp servers whose command line changed
  (a server loads its model and adapters only when it starts).

Engine ``ray`` loads each released run from the artifact store on its first request, so
before anything runs, every run a Ray deployment releases must be complete in the store (its
manifest, written last by a push, is there): a ``release:`` set by hand and built is refused
until the run is pushed, instead of answering 503 after the deploy.

Before any step runs, :func:`preflight` checks every selected deployment (``runtime/preflight.py``):
one missing tool, variable or file refuses the whole apply, so nothing healthy is stopped.

Secrets stay references: compose and Helm read them from the environment and the cluster.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from vilms.compiler import layout
from vilms.compiler.contracts.training_config import ArtifactStoreSpec
from vilms.compiler.errors import ActionError, UsageError
from vilms.compiler.facts import ollama, ray
from vilms.compiler.facts.helm import HELM_TIMEOUT
from vilms.compiler.layout import Layout
from vilms.compiler.naming import helm_release_name
from vilms.compiler.plan import Plan
from vilms.compiler.suggest import did_you_mean
from vilms.runtime import ollama_sync
from vilms.runtime.deployed import DESCRIPTION, manifest_sha256

HELM_ATOMIC = ("--rollback-on-failure", "--wait=watcher")  # Helm 4 (Helm 3: --atomic --wait)
COMPOSE_PORT_TIMEOUT_S = 30
VILMS = ("vilms",)  # how the steps name this program; run as `python -m vilms`


@dataclass(frozen=True)
class Step:
    deployment: str
    target: str
    commands: tuple[tuple[str, ...], ...]
    tool: str  # the program the commands need
    ollama_bases: tuple[str, ...] | None = None  # compose + Ollama: its base models; then derived models are synced
    store_runs: tuple[str, ...] = ()  # engine ray: released runs it loads from the artifact store (checked first)
    store: ArtifactStoreSpec | None = None
    kube: tuple[str, ...] = ()  # target helm: --kube-context / --namespace arguments (also for `helm status`)

    @property
    def first(self) -> str | None:
        """What is checked before the commands, in words (None: nothing)."""
        if not self.store_runs or self.store is None:
            return None
        return f"check that {', '.join(self.store_runs)} {'is' if len(self.store_runs) == 1 else 'are'} in {self.store.uri}/"

    @property
    def then(self) -> str | None:
        """What runs after the commands, in words (None: nothing)."""
        if self.ollama_bases is None:
            return None
        return "create new or changed derived models on the running Ollama (POST /api/create), delete retired ones"


def checked_plan(file: Path) -> Plan:
    """The plan of ``file``, after checking generated/ is exactly what it compiles to."""
    from vilms.compiler.pipeline import build

    return build(file, check=True).plan  # raises StaleOutputError naming each drifted file


def plan_apply(plan: Plan, file: Path, only: list[str] | None) -> list[Step]:
    """The commands for each selected deployment of ``plan`` (every one when ``only`` is None)."""
    deployments = plan.deployments
    for name in only or ():
        if name not in deployments:
            raise UsageError(f"no deployment {name!r} in {file}{did_you_mean(name, deployments)}",
                             hint=f"deployments: {', '.join(sorted(deployments))}")
    names = list(only) if only else sorted(deployments)
    steps = []
    for name in names:
        dep = deployments[name]
        bases = tuple(dep.models) if dep.target == "compose" and dep.engine == "ollama" else None
        step = _step(plan.project, name, dep.target, file, bases, helm_kube_args(dep.kube_context, dep.namespace),
                     Layout.of(file).root)
        if dep.engine == ray.ENGINE:
            runs = {plan.adapters[up.adapter].release for up in dep.upstreams.values() if up.adapter and up.released}
            step = replace(step, store_runs=tuple(sorted(r for r in runs if r)), store=plan.artifact_store)
        steps.append(step)
    return steps


def check_store(steps: list[Step]) -> None:
    """Every run a Ray step releases is complete in the artifact store; else nothing is applied."""
    from vilms.runtime.artifact_store import open_store

    missing: list[tuple[str, str]] = []
    for step in steps:
        if not step.store_runs:
            continue
        store = open_store(step.store)
        missing.extend((step.deployment, run) for run in step.store_runs if store.manifest(run) is None)
    if missing:
        runs = ", ".join(f"{run} (deployment {dep})" for dep, run in missing)
        first = missing[0][1]
        raise ActionError(f"not applied: Ray Serve LLM loads released runs from the artifact store, and it lacks {runs}",
                          hint=f"push the run from where it was trained (`vilms export {first} --push`), "
                               "or release it with `vilms rollout`, which pushes first")


def check_ollama_url(steps: list[Step], url: str | None) -> None:
    """``--ollama-url`` names one server: refuse it when not exactly one step syncs Ollama models."""
    syncing = [s.deployment for s in steps if s.ollama_bases is not None]
    if url is not None and len(syncing) != 1:
        raise UsageError(f"--ollama-url names one Ollama server, and this apply syncs {len(syncing)} "
                         f"({', '.join(syncing) or 'no compose + Ollama deployment'})",
                         hint="name the deployment: `vilms apply DEPLOYMENT --ollama-url URL`")


def _compose_file(name: str) -> str:
    return str(Path(layout.GENERATED, layout.compose_path(name)))


def preflight(plan: Plan, file: Path, steps: list[Step]) -> None:
    """Check every step's deployment before any runs; raise one error naming every problem."""
    from vilms.runtime.preflight import check, refuse

    problems = check(plan, [s.deployment for s in steps], {s.deployment: (s.target, s.tool) for s in steps},
                     Layout.of(file).root)
    if problems:
        raise refuse(problems)


def helm_kube_args(context: str | None, namespace: str | None) -> tuple[str, ...]:
    """Where a helm deployment lives: its kube context and namespace, when vilms.yaml pins them."""
    out: tuple[str, ...] = ()
    if context:
        out += ("--kube-context", context)
    if namespace:
        out += ("--namespace", namespace)
    return out


def _step(project: str, name: str, target: str, file: Path, ollama_bases: tuple[str, ...] | None,
          kube: tuple[str, ...], root: Path) -> Step:
    if target == "compose":
        return Step(name, target, (("docker", "compose", "--file", _compose_file(name),
                                    "up", "--detach", "--remove-orphans", "--wait"),), "docker", ollama_bases)
    if target == "helm":
        create = ("--create-namespace",) if "--namespace" in kube else ()
        description = DESCRIPTION.format(sha=manifest_sha256(root, name))
        return Step(name, target, (("helm", "upgrade", "--install", helm_release_name(project, name),
                                    str(Path(layout.GENERATED, layout.helm_dir(name))), *kube, *create, *HELM_ATOMIC,
                                    "--timeout", HELM_TIMEOUT, "--description", description),),
                    "helm", kube=kube)
    return Step(name, target, ((*VILMS, "up", name, "-f", file.name),), "vilms")


def run_step(step: Step, root: Path, echo: Callable[[str], None], *, ollama_url: str | None = None,
             ollama_timeout_s: float = ollama_sync.TIMEOUT_S) -> None:
    """Run ``step``'s commands in ``root`` (the folder of the real vilms.yaml), echoing each, then
    sync its Ollama models (at ``ollama_url``, else the port compose published)."""
    for command in step.commands:
        argv = list(command)
        if argv[0] == VILMS[0]:
            argv = [sys.executable, "-m", "vilms", *argv[1:]]
        elif shutil.which(argv[0]) is None:
            raise ActionError(f"cannot apply {step.deployment}: `{argv[0]}` is not installed",
                              hint="install Docker Compose v2" if step.tool == "docker" else "install Helm 4")
        echo(f"$ {shlex.join(command)}")
        result = subprocess.run(argv, cwd=root)
        if result.returncode != 0:
            raise ActionError(f"applying {step.deployment} failed: `{shlex.join(command)}` exited {result.returncode}",
                              hint="its output is above; fix the cause")
    if step.ollama_bases is not None:
        _sync_ollama(step.deployment, step.ollama_bases, root, echo, ollama_url, ollama_timeout_s)


def _sync_ollama(deployment: str, bases: tuple[str, ...], root: Path, echo: Callable[[str], None],
                 url: str | None, timeout_s: float) -> None:
    start = f"start it with `docker compose --file {_compose_file(deployment)} up -d`, or pass --ollama-url"

    def connect() -> ollama_sync.OllamaClient:
        client = ollama_sync.OllamaClient(url or published_ollama(deployment, root), timeout_s=timeout_s, start_hint=start)
        echo(f"derived models on Ollama at {client.url}:")
        return client

    try:
        result = ollama_sync.sync(root, deployment, bases, connect, echo)
    except ActionError as exc:
        raise ActionError(f"applying {deployment}: {exc.message}", hint=exc.hint) from None
    if result.created or result.unchanged or result.deleted:
        echo(f"  ollama: {len(result.created)} created, {len(result.unchanged)} unchanged, {len(result.deleted)} deleted")


def published_ollama(deployment: str, root: Path) -> str:
    """The URL of the deployment's Ollama on this host: ``docker compose port`` of its API."""
    argv = ["docker", "compose", "--file", _compose_file(deployment), "port", ollama.SERVICE, str(ollama.PORT)]
    hint = (f"is {deployment} up? `docker compose --file {_compose_file(deployment)} up -d`; or pass --ollama-url "
            "(VILMS_OLLAMA_URL)")
    try:
        result = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=COMPOSE_PORT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ActionError(f"cannot find {deployment}'s Ollama port: `{shlex.join(argv)}` failed ({type(exc).__name__})",
                          hint=hint) from None
    lines = result.stdout.strip().splitlines()
    host, _, port = lines[-1].strip().rpartition(":") if lines else ("", "", "")
    if result.returncode != 0 or not port.isdigit() or not host:
        said = (result.stderr.strip().splitlines() or lines or ["no output"])[-1][:200]
        raise ActionError(f"cannot find {deployment}'s Ollama port: `{shlex.join(argv)}` said: {said}", hint=hint)
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
    return f"http://{host}:{port}"
