"""``generated/<deployment>/helm/`` (target helm): the static chart plus a values.yaml.

The chart ships in the package (templates/helm/chart); the build copies it next to the
values so Argo CD or Flux can sync the folder straight from git.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from vilms.compiler.contracts.training_config import TRAINING_CONFIG
from vilms.compiler.facts import gateway, trainer, vllm
from vilms.compiler.images import GATEWAY_IMAGE, TRAINER_IMAGE, engine_image
from vilms.compiler.naming import dns_label
from vilms.compiler.plan import Deployment, Plan
from vilms.compiler.render.training import training_config

CHART_PACKAGE_DIR = ("helm", "chart")
GATEWAY_RESOURCES = {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}


def chart_files() -> dict[str, bytes]:
    """Relative path → bytes of every file of the shipped chart."""
    root = resources.files("vilms.templates").joinpath(*CHART_PACKAGE_DIR)
    out: dict[str, bytes] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, rel + "/")
            elif child.name != "__init__.py" and not child.name.endswith(".pyc"):
                out[rel] = child.read_bytes()

    walk(root, "")
    return dict(sorted(out.items()))


def _image(ref: str) -> dict[str, str]:
    repository, tag = ref.rsplit(":", 1)
    return {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}


def vllm_container() -> dict[str, Any]:
    """Port, probe and paths of every vLLM container (the chart has no literals of its own)."""
    return {"port": vllm.PORT, "healthPath": vllm.HEALTH_PATH, "configDir": vllm.CONFIG_DIR,
            "configFile": vllm.CONFIG_NAME, "artifactsDir": vllm.ARTIFACTS_DIR, "cacheDir": vllm.HF_HOME}


def gateway_container() -> dict[str, Any]:
    """Port, probes and routes file of the gateway container."""
    return {"port": gateway.PORT, "configDir": gateway.CONFIG_DIR, "routesFile": gateway.ROUTES_NAME,
            "readyPath": gateway.READY_PATH, "livePath": gateway.LIVE_PATH}


def values(plan: Plan, dep: Deployment, routes: str, vllm_configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """values.yaml: ``routes`` is the text of the gateway's routes.yaml, ``vllm_configs`` each model's vLLM config."""
    hw = dep.hardware
    models = []
    for model_name in dep.models:
        model = plan.models[model_name]
        gpus = hw.gpus if hw.kind == "gpu" else 1
        entry: dict[str, Any] = {
            "name": dns_label(model_name),
            "replicas": dep.replicas,
            "config": vllm_configs[model_name],
            "resources": {
                "requests": {"cpu": "2", "memory": f"{max(hw.memory_bytes // 4, 2**30) // 2**30}Gi"},
                "limits": {"nvidia.com/gpu": gpus, "memory": f"{(hw.memory_bytes - hw.os_reserve_bytes) // 2**30}Gi"},
            },
            "runtimeLora": bool(dep.adapters_of(model_name)),
            "secretEnv": ([{"name": "HF_TOKEN", "secretName": f"{plan.project}-secrets", "secretKey": model.token_env}]
                          if model.token_env else []),
            "shmSize": "2Gi",
        }
        if hw.gpu_type:
            entry["nodeSelector"] = {"nvidia.com/gpu.product": hw.gpu_type}
        models.append(entry)
    secret_env = []
    for name in plan.gateway.key_envs:
        secret_env.append({"name": name, "secretName": f"{plan.project}-secrets", "secretKey": name})
    if plan.gateway.otel_endpoint_env:
        secret_env.append({"name": plan.gateway.otel_endpoint_env, "secretName": f"{plan.project}-secrets", "secretKey": plan.gateway.otel_endpoint_env})
    autoscale = dep.autoscale
    ingress: dict[str, Any] = {"enabled": dep.ingress is not None}
    if dep.ingress:
        ingress["host"] = dep.ingress["host"]
        if "class_name" in dep.ingress:
            ingress["className"] = dep.ingress["class_name"]
        if "tls_secret" in dep.ingress:
            ingress["tlsSecret"] = dep.ingress["tls_secret"]
    jobs = [
        {
            "name": dns_label(adapter.name),
            "adapter": adapter.name,
            # a changed training config is a new Job (Jobs are immutable): the name carries its hash
            "revision": hashlib.sha256(TRAINING_CONFIG.dump(training_config(plan, adapter))).hexdigest()[:8],
            "enabled": False,
            "resources": {"limits": {"nvidia.com/gpu": 1}},
        }
        for adapter in sorted(plan.adapters.values(), key=lambda a: a.name)
        if adapter.hardware == hw.name
    ]
    # adapters are read from the training workspace (artifacts/<run_id>/), mounted read-only
    artifacts: dict[str, Any] = {}
    if any(dep.adapters_of(m) for m in dep.models):
        artifacts = {"existingClaim": f"{plan.project}-workspace", "subPath": "artifacts"}
    replicas = max(2, dep.replicas)
    return {
        "fullname": dep.name,
        "project": plan.project,
        "images": {
            "vllm": _image(engine_image("vllm", hw) or ""),
            "gateway": _image(GATEWAY_IMAGE),
            "trainer": _image(TRAINER_IMAGE),
        },
        "vllm": {"container": vllm_container(), "models": models},
        "gateway": {
            "replicas": replicas,
            "port": dep.gateway_port,
            "container": gateway_container(),
            "routes": routes,
            "resources": GATEWAY_RESOURCES,
            "autoscaling": {
                "enabled": bool(autoscale),
                "minReplicas": autoscale.get("min", replicas),
                "maxReplicas": autoscale.get("max", max(replicas, 4)),
                "targetCPUUtilizationPercentage": autoscale.get("cpu_percent", 70),
            },
            "pdb": {"minAvailable": 1},
            "secretEnv": secret_env,
        },
        "ingress": ingress,
        "modelCache": {"size": "200Gi"},
        "artifacts": artifacts,
        "training": {"workspaceClaim": f"{plan.project}-workspace", "workspaceDir": trainer.WORKSPACE, "jobs": jobs,
                     "nodeSelector": {"nvidia.com/gpu.product": hw.gpu_type} if hw.gpu_type else {}},
    }
