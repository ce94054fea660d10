"""Stage 4, render: the plan → ``{relative path: bytes}``. Pure: reads no input, writes nothing.

Every artefact is parsed back and compared with the data it was built from before it
is returned, so nothing unparseable ever reaches ``generated/``.
"""

from __future__ import annotations

from typing import Any

from vilms.compiler import layout
from vilms.compiler.contracts.local_plan import LOCAL_PLAN
from vilms.compiler.contracts.routes import ROUTES
from vilms.compiler.contracts.training_config import TRAINING_CONFIG
from vilms.compiler.plan import Plan
from vilms.compiler.render import compose, helm, local, modelfile, routes, training, vllm
from vilms.compiler.serialize import load_yaml, plain, to_yaml


def render(plan: Plan, *, memory_estimates: dict[str, dict[str, int]] | None = None) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    src = plan.source_name

    def put_yaml(path: str, data: Any) -> None:
        out[path] = _checked_yaml(path, data, src)

    for dep in plan.deployments.values():
        base = dep.name
        table = routes.routes(plan, dep)
        out[layout.routes_path(base)] = ROUTES.dump(table, source=src)
        modelfile_names: list[str] = []
        if dep.engine == "ollama":
            for name, text in modelfile.modelfiles(plan, dep).items():
                out[f"{base}/ollama/{name}"] = text.encode("utf-8")
                modelfile_names.append(name)
        vllm_configs = vllm.vllm_configs(plan, dep) if dep.engine == "vllm" else {}
        for model_name, config in vllm_configs.items():
            put_yaml(f"{base}/vllm/{model_name}.yaml", config)
        if dep.target == "compose":
            put_yaml(f"{base}/docker-compose.yaml", compose.compose(plan, dep, modelfile_names))
        elif dep.target == "local":
            out[layout.local_plan_path(base)] = LOCAL_PLAN.dump(local.local_plan(plan, dep), source=src)
        elif dep.target == "helm":
            for rel, data in helm.chart_files().items():
                out[f"{base}/helm/{rel}"] = data
            put_yaml(f"{base}/helm/values.yaml", helm.values(plan, dep, ROUTES.data(table), vllm_configs))
    for adapter in plan.adapters.values():
        estimate = (memory_estimates or {}).get(adapter.name)
        config = training.training_config(plan, adapter, estimate)
        out[layout.training_config_path(adapter.name)] = TRAINING_CONFIG.dump(config, source=src)
    return dict(sorted(out.items()))


def _checked_yaml(path: str, data: Any, source: str | None) -> bytes:
    text = to_yaml(data, source=source)
    if load_yaml(text) != plain(data):
        raise AssertionError(f"{path}: YAML does not parse back to the data it was rendered from")
    return text

