"""Where a project's local deployments are, and whether their compiled plan is current.

`vilms up` compiles vilms.yaml (no I/O beyond reading it; ~0.2 s) to pick the deployment
and to refuse a stale ``generated/<deployment>/``, reusing the pipeline and the
tree comparison of `vilms build --check`. `vilms status`/`down` never compile: they must
work while vilms.yaml is being edited, so they look at what was built and what runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vilms.compiler import layout
from vilms.compiler.errors import ActionError, StaleOutputError, UsageError
from vilms.compiler.layout import Layout
from vilms.compiler.suggest import did_you_mean

from .state import RunDir

TARGET = "local"


@dataclass(frozen=True)
class Project:
    file: Path  # absolute path of vilms.yaml
    layout: Layout  # its generated/, .vilms/run/, ... (beside the real file, as the compiler writes them)

    @classmethod
    def at(cls, file: Path) -> Project:
        file = Path(file).resolve()
        return cls(file=file, layout=Layout(file.parent))

    @property
    def root(self) -> Path:
        return self.layout.root

    def plan_file(self, deployment: str) -> Path:
        return self.layout.local_plan(deployment)

    def run_dir(self, deployment: str) -> RunDir:
        return RunDir(self.layout.runner_dir(deployment))

    def built(self) -> list[str]:
        """Deployments that have a local.yaml in generated/."""
        return sorted(p.parent.name for p in self.layout.generated.glob(layout.local_plan_path("*")))

    def with_runs(self) -> list[str]:
        """Deployments with a run folder (running, stopped, or left by a supervisor that died)."""
        return sorted(p.name for p in self.layout.runner.glob("*") if p.is_dir())


def deployment_to_start(project: Project, name: str | None) -> str:
    """Compile vilms.yaml, pick the target-local deployment to start, and check that
    ``generated/<name>/`` is what vilms.yaml compiles to."""
    from vilms.compiler.pipeline import compile_files
    from vilms.compiler.write import diff_tree

    doc, plan, files = compile_files(project.file)
    local = sorted(n for n, d in plan.deployments.items() if d.target == TARGET)
    if name is None:
        if len(local) != 1:
            listed = ", ".join(local) if local else "none"
            raise UsageError(f"name the deployment to start: {len(local)} deployments have target local ({listed})",
                             hint="vilms up DEPLOYMENT" if local else "give a deployment `target: local` in vilms.yaml")
        name = local[0]
    elif name not in plan.deployments:
        raise UsageError(f"unknown deployment {name!r}{did_you_mean(name, plan.deployments)}",
                         hint=f"deployments with target local: {', '.join(local) or 'none'}")
    elif name not in local:
        raise UsageError(f"deployment {name!r} has target {plan.deployments[name].target}; `vilms up` runs target local",
                         hint=f"deployments with target local: {', '.join(local) or 'none'}")
    plan_file = project.plan_file(name)
    if not plan_file.is_file():
        raise ActionError(f"{plan_file} does not exist", hint=f"run `vilms build -f {doc.display_name}` first")
    prefix = f"{name}/"
    mine = {rel[len(prefix):]: data for rel, data in files.items() if rel.startswith(prefix)}
    drift = diff_tree(project.layout.generated / name, mine)
    if drift:
        lines = [f"{layout.GENERATED}/{prefix}{d.path}: {d.state}" for d in drift]
        raise StaleOutputError(f"{layout.GENERATED}/{name}/ is not what {doc.display_name} compiles to:\n  " + "\n  ".join(lines),
                               hint="run `vilms build`, then `vilms up` again")
    return name


def deployment_in_view(project: Project, name: str | None, *, running: list[str]) -> str | None:
    """The deployment `status`/`down` mean: the one named, else the only one running, else
    the only one built. None when nothing is built or running."""
    if name is not None:
        known = set(project.built()) | set(project.with_runs())
        if name not in known:
            raise UsageError(f"unknown local deployment {name!r}{did_you_mean(name, known)}",
                             hint=f"built: {', '.join(sorted(known))}" if known else "run `vilms build` first")
        return name
    if len(running) == 1:
        return running[0]
    if len(running) > 1:
        raise UsageError(f"name a deployment: {len(running)} are running ({', '.join(running)})")
    built = project.built()
    if len(built) > 1:
        raise UsageError(f"name a deployment: {len(built)} local deployments are built ({', '.join(built)})")
    return built[0] if built else None
