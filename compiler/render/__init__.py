"""Stage 4, render: the plan → ``{relative path: bytes}``. Pure: reads no input, writes nothing.

Every artefact is parsed back and compared with the data it was built from before it
is returned, so nothing unparseable ever reaches ``generated/``. Two artefacts never
share a path, and no file stands where another needs a folder: validation keeps names
clear of the layout (:data:`vilms.compiler.layout.RESERVED_DEPLOYMENT_NAMES`), so a
clash here is a defect in vilms and fails loudly instead of overwriting a file.
"""

from __future__ import annotations

import hashlib
from typing import Any

from vilms.compiler import layout
from vilms.compiler.contracts.local_plan import LOCAL_PLAN
from vilms.compiler.contracts.routes import ROUTES
from vilms.compiler.contracts.training_config import TRAINING_CONFIG
from vilms.compiler.plan import Plan
from vilms.compiler.render import compose, gitops, helm, local, modelfile, ray_serve, routes, training, vllm
from vilms.compiler.serialize import load_yaml, load_yaml_documents, plain, to_yaml, to_yaml_documents


def render(plan: Plan, *, memory_estimates: dict[str, dict[str, int]] | None = None) -> dict[str, bytes]:
    out = _Tree()
    src = plan.source_name

    def put_yaml(path: str, data: Any) -> None:
        out.put(path, _checked_yaml(path, data, src))

    for dep in plan.deployments.values():
        base = dep.name
        table = routes.routes(plan, dep)
        routes_text = ROUTES.dump(table, source=src)
        out.put(layout.routes_path(base), routes_text)
        modelfile_names: list[str] = []
        if dep.engine == "ollama":
            for name, text in modelfile.modelfiles(plan, dep).items():
                out.put(layout.modelfile_path(base, name), text.encode("utf-8"))
                modelfile_names.append(name)
        vllm_configs = vllm.vllm_configs(plan, dep) if dep.engine == "vllm" else {}
        # engine ray: the same engine arguments, as Ray Serve LLM's engine_kwargs in the RayService
        serve_config = ray_serve.serve_config_text(plan, dep, vllm.engine_args_of(plan, dep)) if dep.engine == "ray" else None
        for model_name, config in vllm_configs.items():
            put_yaml(layout.vllm_config_path(base, model_name), config)
        if dep.target == "compose":
            put_yaml(layout.compose_path(base),
                     compose.compose(plan, dep, modelfile_names, hashlib.sha256(routes_text).hexdigest()))
        elif dep.target == "local":
            out.put(layout.local_plan_path(base), LOCAL_PLAN.dump(local.local_plan(plan, dep), source=src))
        elif dep.target == "helm":
            for rel, data in helm.chart_files().items():
                out.put(f"{layout.helm_dir(base)}/{rel}", data)
            # the chart mounts routes.yaml byte for byte: Helm's toYaml would re-serialize it and lose
            # characters (U+0085, U+2028, U+2029, C1 controls) that this serializer escapes
            put_yaml(f"{layout.helm_dir(base)}/values.yaml", helm.values(plan, dep, routes_text.decode("utf-8"), vllm_configs, serve_config))
            if plan.gitops is not None and plan.gitops.argocd is not None:
                put_yaml(layout.argocd_application_path(base), gitops.argocd_application(plan, dep))
            if plan.gitops is not None and plan.gitops.flux is not None:
                out.put(layout.flux_path(base), _checked_documents(layout.flux_path(base), gitops.flux_objects(plan, dep), src))
    for adapter in plan.adapters.values():
        estimate = (memory_estimates or {}).get(adapter.name)
        config = training.training_config(plan, adapter, estimate)
        out.put(layout.training_config_path(adapter.name), TRAINING_CONFIG.dump(config, source=src))
    return out.files()


class _Tree:
    """Files by relative path; refuses a second file at a path, or a file where a folder must be."""

    def __init__(self) -> None:
        self._files: dict[str, bytes] = {}
        self._folders: set[str] = set()

    def put(self, path: str, data: bytes) -> None:
        parts = path.split("/")
        folders = ["/".join(parts[:i]) for i in range(1, len(parts))]
        clash = path if path in self._files or path in self._folders else next((f for f in folders if f in self._files), None)
        if clash is not None:
            raise AssertionError(f"two generated artefacts claim {clash!r}: names must not collide with the layout of generated/")
        self._files[path] = data
        self._folders.update(folders)

    def files(self) -> dict[str, bytes]:
        return dict(sorted(self._files.items()))


def _checked_yaml(path: str, data: Any, source: str | None) -> bytes:
    text = to_yaml(data, source=source)
    if load_yaml(text) != plain(data):
        raise AssertionError(f"{path}: YAML does not parse back to the data it was rendered from")
    return text


def _checked_documents(path: str, docs: list[Any], source: str | None) -> bytes:
    text = to_yaml_documents(docs, source=source)
    if load_yaml_documents(text) != plain(docs):
        raise AssertionError(f"{path}: YAML documents do not parse back to the data they were rendered from")
    return text
