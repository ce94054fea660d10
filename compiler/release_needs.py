"""What a serving engine needs of a released run on this machine before it can serve it.

One place for it: `vilms rollout` / `rollback` refuse a run that lacks it (before vilms.yaml
changes), and `vilms apply` checks it for every deployment before touching any.

* llama.cpp (local) and Ollama (compose) load the run's GGUF adapter
  (``artifacts/<run>/gguf/adapter.gguf``, written by ``vilms export RUN --gguf``);
* vLLM under compose mounts ``artifacts/`` and loads the run's PEFT adapter folder;
* vLLM under Helm and Ray load from the cluster or the artifact store (checked elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vilms.compiler import layout
from vilms.compiler.errors import ActionError
from vilms.compiler.plan import Deployment, Plan


@dataclass(frozen=True)
class Need:
    deployment: str
    run_id: str
    path: str  # project-relative
    hint: str

    def missing_in(self, root: Path) -> bool:
        target = root / self.path
        return not (target.is_dir() if self.path.endswith(layout.RUN_ADAPTER) else target.is_file())

    def message(self) -> str:
        what = "GGUF adapter" if self.path.endswith(".gguf") else "adapter folder"
        return f"its engine loads the {what} of run {self.run_id}, and {self.path} does not exist"


def need(dep: Deployment, run_id: str) -> Need | None:
    """What ``dep`` reads of ``run_id`` from artifacts/ (None: nothing on this machine)."""
    if dep.engine in ("llamacpp", "ollama"):
        return Need(dep.name, run_id, layout.run_path(run_id, layout.RUN_ADAPTER_GGUF),
                    f"export it as GGUF: `vilms export {run_id} --gguf`")
    if dep.engine == "vllm" and dep.target == "compose":
        return Need(dep.name, run_id, layout.run_path(run_id, layout.RUN_ADAPTER),
                    f"copy the run's folder into {layout.ARTIFACTS}/ (or train it here)")
    return None


def released_needs(plan: Plan, name: str) -> list[Need]:
    """What deployment ``name`` needs of every run it releases."""
    dep = plan.deployments[name]
    runs = sorted({plan.adapters[up.adapter].release for up in dep.upstreams.values() if up.adapter and up.released} - {None})
    return [n for n in (need(dep, run) for run in runs) if n is not None]


def missing_for(plan: Plan, root: Path, adapter: str, run_id: str) -> list[Need]:
    """What a deployment serving ``adapter`` in ``plan`` needs of ``run_id`` and lacks under ``root``."""
    out = []
    for name in sorted(plan.deployments):
        dep = plan.deployments[name]
        if any(up.adapter == adapter for up in dep.upstreams.values()):
            n = need(dep, run_id)
            if n is not None and n.missing_in(root):
                out.append(n)
    return out


def refuse_missing(plan: Plan, root: Path, adapter: str, run_id: str, file: Path) -> None:
    """Refuse to release ``run_id`` when a deployment serving ``adapter`` lacks what it needs of it
    (called by rollout and rollback before anything is written)."""
    missing = missing_for(plan, root, adapter, run_id)
    if not missing:
        return
    lines = [f"not released: {run_id} lacks what {'a deployment' if len(missing) == 1 else 'deployments'} "
             f"serving {adapter} need{'s' if len(missing) == 1 else ''}; {file.name} and generated/ were not changed"]
    lines += [f"  {n.deployment}: {n.message()}\n    hint: {n.hint}" for n in missing]
    raise ActionError("\n".join(lines), hint=missing[0].hint)
