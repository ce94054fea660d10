"""Where everything lives in a project: the one home of every path ViLMS reads or writes.

A project is the folder of its ``vilms.yaml``. ``generated/`` holds what ``vilms build``
writes (committed), ``artifacts/`` what training and export write (not committed), and
``.vilms/`` the release history and the approvals (committed), the local runner's state and the
trainers' run locks (not committed).

Paths inside ``generated/`` are given relative to it (what the renderers return);
:class:`Layout` turns them into absolute paths for the readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GENERATED = "generated"
ARTIFACTS = "artifacts"
STATE = ".vilms"
RELEASES = f"{STATE}/releases"
APPROVALS = f"{STATE}/approvals"  # <adapter>.jsonl: every `vilms approve`, committed beside the release history
RUN_LOCKS = f"{STATE}/locks"  # flock files: a run's trainer holds <run_id>.run.lock while it trains; never committed
RUNNER = f"{STATE}/run"
PROJECT_LOCK = f"{STATE}/project.lock"  # held by a command writing the project (build); never committed
JOURNAL = f"{STATE}/release.journal.json"  # a release in progress, removed when it is complete; never committed
STATE_GITIGNORE = f"{STATE}/.gitignore"  # names PROJECT_LOCK and JOURNAL, so they stay out of git

MANIFEST = "manifest.json"
TRAINING = "training"  # generated/training/<adapter>.yaml
# names a deployment may not take: generated/<deployment>/ would be one of these
RESERVED_DEPLOYMENT_NAMES = frozenset({TRAINING, MANIFEST})

RUN_RECORD = "run.json"
RUN_CONFIG = "training.yaml"  # the training config a run was started from, copied into it
RUN_ADAPTER = "adapter"  # PEFT adapter folder of a run
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # the weights in it (PEFT's name)
RUN_ADAPTER_GGUF = "gguf/adapter.gguf"  # the adapter converted for llama.cpp and Ollama

STATE_FILE = "state.json"  # in .vilms/run/<deployment>/, beside:
RUNNER_LOCK = "lock"  # held by the deployment's supervisor for its whole life
RUNNER_LOGS = "logs"  # one log per process, plus the supervisor's
RUNNER_ROUTES = "routes.yaml"  # the routes the local gateway serves: the supervisor's copy of the applied build's
RUNNER_RESTART = "restart.json"  # the processes `vilms restart` asks the supervisor to restart
OLLAMA_RECORD = "ollama-models.json"  # in .vilms/run/<deployment>/: derived models `vilms apply` created (compose + Ollama)


# --- inside generated/ (relative paths, as the renderers return them)


def routes_path(deployment: str) -> str:
    return f"{deployment}/gateway/routes.yaml"


def local_plan_path(deployment: str) -> str:
    return f"{deployment}/local.yaml"


def compose_path(deployment: str) -> str:
    return f"{deployment}/docker-compose.yaml"


def ollama_dir(deployment: str) -> str:
    return f"{deployment}/ollama"


def modelfile_path(deployment: str, name: str) -> str:
    return f"{ollama_dir(deployment)}/{name}"


def vllm_config_path(deployment: str, model: str) -> str:
    return f"{deployment}/vllm/{model}.yaml"


def helm_dir(deployment: str) -> str:
    return f"{deployment}/helm"


def gitops_dir(deployment: str) -> str:
    return f"{deployment}/gitops"


def argocd_application_path(deployment: str) -> str:
    return f"{gitops_dir(deployment)}/argocd-application.yaml"


def flux_path(deployment: str) -> str:
    """The deployment's Flux GitRepository and HelmRelease, two documents."""
    return f"{gitops_dir(deployment)}/flux.yaml"


def chart_in_repository(path: str, deployment: str) -> str:
    """The helm deployment's chart as a path in the git repository whose folder ``path`` ("" its root) holds vilms.yaml."""
    return "/".join(part for part in (path, GENERATED, helm_dir(deployment)) if part)


def training_config_path(adapter: str) -> str:
    return f"{TRAINING}/{adapter}.yaml"


# --- inside artifacts/ (relative to the project)


def run_path(run_id: str, *parts: str) -> str:
    """``artifacts/<run_id>[/part...]`` as a project-relative POSIX path."""
    return "/".join((ARTIFACTS, run_id, *parts))


# --- absolute paths of one project


@dataclass(frozen=True)
class Layout:
    """The paths of the project whose ``vilms.yaml`` lies in ``root``."""

    root: Path

    @classmethod
    def of(cls, project_file: Path) -> Layout:
        """The layout beside the real file: ``generated/`` is written beside what a symlink points to."""
        return cls(Path(project_file).resolve().parent)

    @property
    def generated(self) -> Path:
        return self.root / GENERATED

    def in_generated(self, relative: str) -> Path:
        return self.generated / relative

    def routes(self, deployment: str) -> Path:
        return self.in_generated(routes_path(deployment))

    def local_plan(self, deployment: str) -> Path:
        return self.in_generated(local_plan_path(deployment))

    def training_config(self, adapter: str) -> Path:
        return self.in_generated(training_config_path(adapter))

    @property
    def manifest(self) -> Path:
        return self.generated / MANIFEST

    @property
    def artifacts(self) -> Path:
        return self.root / ARTIFACTS

    def run(self, run_id: str) -> Path:
        return self.root / run_path(run_id)

    def run_record(self, run_id: str) -> Path:
        return self.root / run_path(run_id, RUN_RECORD)

    @property
    def releases(self) -> Path:
        return self.root / RELEASES

    def history(self, adapter: str) -> Path:
        return self.releases / f"{adapter}.jsonl"

    @property
    def approvals(self) -> Path:
        return self.root / APPROVALS

    def approval_log(self, adapter: str) -> Path:
        return self.approvals / f"{adapter}.jsonl"

    @property
    def run_locks(self) -> Path:
        return self.root / RUN_LOCKS

    def run_lock(self, run_id: str) -> Path:
        return self.run_locks / f"{run_id}.run.lock"

    def adapter_lock(self, adapter: str) -> Path:
        """Held for a moment while a trainer picks (resumes or creates) a run of ``adapter``."""
        return self.run_locks / f"{adapter}.adapter.lock"

    @property
    def project_lock(self) -> Path:
        return self.root / PROJECT_LOCK

    @property
    def journal(self) -> Path:
        return self.root / JOURNAL

    @property
    def state_gitignore(self) -> Path:
        return self.root / STATE_GITIGNORE

    @property
    def runner(self) -> Path:
        return self.root / RUNNER

    def runner_dir(self, deployment: str) -> Path:
        return self.runner / deployment
