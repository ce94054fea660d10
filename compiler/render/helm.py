"""``generated/<deployment>/helm/`` (target helm): the static chart plus a values.yaml.

The chart ships in the package (templates/helm/chart); the build copies it next to the
values so Argo CD or Flux can sync the folder straight from git.
"""

from __future__ import annotations

import hashlib
import math
from importlib import resources
from typing import Any

from vilms.compiler.contracts.training_config import TRAINING_CONFIG, DistributedSpec
from vilms.compiler.errors import ExitCode
from vilms.compiler.facts import gateway, kubeflow, ray, trainer, vllm
from vilms.compiler.images import GATEWAY_IMAGE, RAY_LLM_IMAGE, TRAINER_IMAGE, engine_image
from vilms.compiler.memory.placement import placements
from vilms.compiler.naming import dns_label
from vilms.compiler.plan import Adapter, Deployment, Hardware, Plan
from vilms.compiler.render import ray_serve
from vilms.compiler.render.training import training_config
from vilms.compiler.resolve import AUTOSCALE_QUEUE_DEFAULT

CHART_PACKAGE_DIR = ("helm", "chart")
GATEWAY_RESOURCES = {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
# Grafana dashboards: static JSON in the chart (templates/helm/chart/dashboards/<name>.json, edited in Grafana and
# exported), each shipped in its own ConfigMap (monitoring.dashboards.<name>; the template reads it with .Files.Get)
DASHBOARDS_DIR = "dashboards"
DASHBOARDS = ("gateway", "training", "vllm")

# Seconds from a pod's deletion until no gateway sends it new requests, beyond one discovery interval:
# the pod leaves its EndpointSlice, and CoreDNS's cache of the headless Service (kubernetes plugin TTL 5 s)
# expires. The preStop hook sleeps this long plus gateway.discovery_interval before vLLM gets SIGTERM.
ENDPOINT_PROPAGATION_S = 5
PDB_MAX_UNAVAILABLE = 1  # per model: a drain evicts one pod at a time and never waits forever (1 replica too)
KEDA_KV_CACHE_DEFAULT = 0.8  # serving.<model>.autoscale.kv_cache: mean KV-cache use that adds a replica
HPA_CPU_PERCENT_DEFAULT = 70
SHM_SIZE = "2Gi"  # /dev/shm of vLLM and trainer pods (a container's default 64 MiB is too small for NCCL and PyTorch)
# the head of a training RayJob: GCS and the driver (`vilms train --ray auto`), no GPU and no training worker
RAY_HEAD_RESOURCES = {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}
RAYJOB_TTL_S = 3600  # a finished RayJob (its status, the submitter's logs) stays an hour, then KubeRay deletes it
RAYJOB_BACKOFF_LIMIT = 2  # new attempts of a failed training RayJob (each resumes from the last checkpoint), as the Job's backoffLimit


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
            "configFile": vllm.CONFIG_NAME, "artifactsDir": vllm.ARTIFACTS_DIR, "cacheDir": vllm.HF_HOME,
            "multiNodeScript": vllm.MULTI_NODE_SCRIPT}


def gateway_container() -> dict[str, Any]:
    """Port, probes and routes file of the gateway container."""
    return {"port": gateway.PORT, "configDir": gateway.CONFIG_DIR, "routesFile": gateway.ROUTES_NAME,
            "readyPath": gateway.READY_PATH, "livePath": gateway.LIVE_PATH}


def startup_seconds(weight_bytes: int | None) -> int:
    """Longest start a vLLM pod is given before its startup probe fails it (facts.vllm: cold download + load)."""
    if weight_bytes is None:
        return vllm.UNKNOWN_LOAD_S
    return math.ceil(weight_bytes / vllm.LOAD_BYTES_PER_S) + vllm.ENGINE_START_S


def prestop_seconds(plan: Plan) -> int:
    """How long a vLLM pod keeps serving after its deletion, so every gateway has stopped sending to it."""
    return math.ceil(plan.gateway.discovery_interval) + ENDPOINT_PROPAGATION_S


def termination_grace_seconds(plan: Plan) -> int:
    """The preStop sleep plus the longest request the gateway lets run (gateway.request_timeout)."""
    return prestop_seconds(plan) + math.ceil(plan.gateway.request_timeout)


def _model_autoscaling(dep: Deployment, model_name: str, replicas: int) -> dict[str, Any]:
    """KEDA on vLLM's queue and KV cache (serving.<model>.autoscale); off: min = max = replicas."""
    spec = dep.serving_of(model_name).autoscale
    return {
        "enabled": bool(spec),
        "minReplicas": spec.get("min", replicas),
        "maxReplicas": spec.get("max", replicas),
        "queue": spec.get("queue", AUTOSCALE_QUEUE_DEFAULT),
        "kvCache": spec.get("kv_cache", KEDA_KV_CACHE_DEFAULT),
    }


def node_resources(hw: Hardware, gpus: int) -> dict[str, Any]:
    """Requests and limits of a GPU pod of profile ``hw`` (vLLM engines and trainers alike): ``gpus`` GPUs,
    a quarter of the host memory requested, all of it but the OS reserve as the limit."""
    return {
        "requests": {"cpu": "2", "memory": f"{max(hw.memory_bytes // 4, 2**30) // 2**30}Gi"},
        "limits": {"nvidia.com/gpu": gpus, "memory": f"{(hw.memory_bytes - hw.os_reserve_bytes) // 2**30}Gi"},
    }


def runs_as_trainjob(dist: DistributedSpec) -> bool:
    """More than one process or node: a Kubeflow Trainer TrainJob (torchrun on every node), else a batch Job."""
    return dist.nnodes > 1 or dist.nproc_per_node > 1


def training_job(plan: Plan, adapter: Adapter, hw: Hardware) -> dict[str, Any]:
    """``training.jobs[*]``: how one adapter trains on the cluster (a Job on one GPU, a TrainJob beyond)."""
    config = training_config(plan, adapter)
    dist = config.distributed
    entry: dict[str, Any] = {
        "name": dns_label(adapter.name),
        "adapter": adapter.name,
        # a changed training config is a new Job or TrainJob (both immutable): the name carries its hash
        "revision": hashlib.sha256(TRAINING_CONFIG.dump(config)).hexdigest()[:8],
        "enabled": False,
    }
    env = training_secret_env(plan, adapter)
    if env:
        entry["secretEnv"] = env
    if dist.engine == "ray":  # Ray Train on a RayJob's own Ray cluster: nnodes worker pods × their GPUs
        return {**entry, "kind": "RayJob", "numNodes": dist.nnodes, "numProcPerNode": dist.nproc_per_node,
                "resources": node_resources(hw, dist.nproc_per_node), "shmSize": SHM_SIZE, "rayJob": rayjob_facts()}
    if not runs_as_trainjob(dist):
        return {**entry, "kind": "Job", "resources": node_resources(hw, 1)}
    return {**entry, "kind": "TrainJob", "numNodes": dist.nnodes, "numProcPerNode": dist.nproc_per_node,
            "maxRestarts": dist.max_restarts, "resources": node_resources(hw, dist.nproc_per_node), "shmSize": SHM_SIZE}


def rayjob_facts() -> dict[str, Any]:
    """What a training RayJob needs beyond its sizes (facts.ray): the CRD version, Ray's version and ports,
    the submission mode, the containers' names and the head's resources."""
    return {
        "apiVersion": ray.API_VERSION, "rayVersion": ray.VERSION, "submissionMode": ray.RAYJOB_SUBMISSION_MODE,
        "nameMax": ray.RAYJOB_NAME_MAX, "address": ray.RAY_ADDRESS_IN_CLUSTER,
        "ttlSecondsAfterFinished": RAYJOB_TTL_S, "backoffLimit": RAYJOB_BACKOFF_LIMIT,
        "headContainer": ray.HEAD_CONTAINER, "workerContainer": ray.WORKER_CONTAINER, "workerGroup": ray.TRAIN_WORKER_GROUP,
        "ports": {"gcs": ray.GCS_PORT, "dashboard": ray.DASHBOARD_PORT, "client": ray.CLIENT_PORT},
        "headResources": RAY_HEAD_RESOURCES,
    }


def trainjob_runtime() -> dict[str, Any]:
    """``training.trainJob``: the Kubeflow Trainer runtime every TrainJob refers to and patches (facts.kubeflow)."""
    return {
        "apiVersion": kubeflow.API_VERSION,
        "runtimeRef": {"name": kubeflow.RUNTIME_NAME, "kind": kubeflow.RUNTIME_KIND, "apiGroup": kubeflow.API_GROUP},
        "replicatedJob": kubeflow.REPLICATED_JOB,
        "container": kubeflow.CONTAINER,
        "patchManager": kubeflow.PATCH_MANAGER,
        "launcher": kubeflow.LAUNCHER,
    }


def _models(plan: Plan, dep: Deployment, vllm_configs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    hw = dep.hardware
    placed = placements(plan, dep)
    models = []
    for model_name in dep.models:
        model = plan.models[model_name]
        place = placed[model_name]
        entry: dict[str, Any] = {
            "name": dns_label(model_name),
            "replicas": place.replicas,
            # nodes > 1: a LeaderWorkerSet group per replica, tensor parallel in a node, pipeline across nodes
            "nodes": place.nodes,
            "tensorParallel": place.tensor_parallel,
            "pipelineParallel": place.pipeline_parallel,
            "config": vllm_configs[model_name],
            "resources": node_resources(hw, place.gpus_per_node),
            "runtimeLora": bool(dep.adapters_of(model_name)),
            "secretEnv": ([{"name": "HF_TOKEN", "secretName": f"{plan.project}-secrets", "secretKey": model.token_env}]
                          if model.token_env else []),
            "shmSize": SHM_SIZE,
            "startupProbe": {"periodSeconds": vllm.STARTUP_PROBE_PERIOD_S,
                             "failureThreshold": math.ceil(startup_seconds(place.weight_bytes) / vllm.STARTUP_PROBE_PERIOD_S)},
            "autoscaling": _model_autoscaling(dep, model_name, place.replicas),
        }
        if hw.gpu_type:
            entry["nodeSelector"] = {"nvidia.com/gpu.product": hw.gpu_type}
        models.append(entry)
    return models


def _dashboards(plan: Plan, dep: Deployment, on: bool) -> dict[str, bool]:
    """Which dashboards the chart ships: the gateway's always, vLLM's for vLLM engines, training's when adapters train."""
    wanted = {"gateway": True, "training": bool(plan.adapters), "vllm": dep.engine == "vllm"}
    return {name: on and wanted[name] for name in DASHBOARDS}


def _monitoring(plan: Plan, dep: Deployment) -> dict[str, Any]:
    """Prometheus Operator monitors, the dashboard ConfigMaps and the Prometheus KEDA queries."""
    spec = dep.monitoring
    out: dict[str, Any] = {
        "enabled": spec is not None,
        "prometheusUrl": (spec or {}).get("prometheus_url", ""),
        "dashboardsDir": DASHBOARDS_DIR,
        "dashboards": _dashboards(plan, dep, bool(spec and spec["dashboard"])),
        "labels": {},  # extra labels on monitors, e.g. the `release:` a Prometheus selects them by
        "vllmMetricsPath": vllm.METRICS_PATH,
        "gatewayMetricsPath": gateway.METRICS_PATH,
        "metrics": {"queue": vllm.METRIC_WAITING, "kvCache": vllm.METRIC_KV_CACHE, "gatewayInFlight": gateway.METRIC_IN_FLIGHT},
    }
    if plan.gateway.ops_key_env:  # /metrics needs the ops key: Prometheus sends it as a bearer token
        out["gatewayAuth"] = {"secretName": f"{plan.project}-secrets", "secretKey": plan.gateway.ops_key_env}
    return out


def _ray(plan: Plan, dep: Deployment, serve_config: str | None) -> dict[str, Any]:
    """``ray:``: the RayService of an ``engine: ray`` deployment (``enabled: false`` for every other engine)."""
    if serve_config is None:
        return {"enabled": False}
    hw = dep.hardware
    shape = ray_serve.layout(plan, dep)
    env, secret_env = ray_serve.storage_env(plan, dep)
    return {
        "enabled": True,
        "apiVersion": ray.API_VERSION,
        "rayVersion": ray.VERSION,
        "serviceName": shape.service,
        "image": _image(RAY_LLM_IMAGE),
        "container": ray_serve.container(),
        "serveConfig": serve_config,
        "autoscaling": shape.autoscaling,
        "head": ray_serve.head_group(),
        "workers": {"groupName": ray.WORKER_GROUP_NAME, "replicas": shape.initial_nodes, "minReplicas": shape.min_nodes,
                    "maxReplicas": shape.max_nodes, "resources": node_resources(hw, hw.gpus)},
        "env": env,
        "secretEnv": ray_serve.token_env(plan, dep) + secret_env,
        "nodeSelector": {"nvidia.com/gpu.product": hw.gpu_type} if hw.gpu_type else {},
        "shmSize": SHM_SIZE,
        "terminationGracePeriodSeconds": termination_grace_seconds(plan),
    }


def training_secret_env(plan: Plan, adapter: Adapter) -> list[dict[str, str]]:
    """The variables a training job reads from the project's Secret: the MLflow server's URI
    (``tracking.mlflow.uri: env:NAME``) and the OTLP endpoint and headers (``telemetry.otlp``, metrics on)."""
    names = set(plan.telemetry.env_names) if plan.telemetry is not None and plan.telemetry.metrics else set()
    if adapter.mlflow is not None and adapter.mlflow.tracking_uri_env:
        names.add(adapter.mlflow.tracking_uri_env)
    return [{"name": n, "secretName": f"{plan.project}-secrets", "secretKey": n} for n in sorted(names)]


def values(plan: Plan, dep: Deployment, routes: str, vllm_configs: dict[str, dict[str, Any]],
           serve_config: str | None = None) -> dict[str, Any]:
    """values.yaml: ``routes`` is the text of the gateway's routes.yaml, ``vllm_configs`` each model's vLLM config
    (engine vllm), ``serve_config`` the RayService's serveConfigV2 (engine ray; then no vLLM model is rendered)."""
    hw = dep.hardware
    secret_env = []
    for name in plan.gateway.key_envs:
        secret_env.append({"name": name, "secretName": f"{plan.project}-secrets", "secretKey": name})
    for name in plan.telemetry.env_names if plan.telemetry else ():
        secret_env.append({"name": name, "secretName": f"{plan.project}-secrets", "secretKey": name})
    autoscale = dep.autoscale
    ingress: dict[str, Any] = {"enabled": dep.ingress is not None}
    if dep.ingress:
        ingress["host"] = dep.ingress["host"]
        if "class_name" in dep.ingress:
            ingress["className"] = dep.ingress["class_name"]
        if "tls_secret" in dep.ingress:
            ingress["tlsSecret"] = dep.ingress["tls_secret"]
    jobs = [training_job(plan, adapter, hw)
            for adapter in sorted(plan.adapters.values(), key=lambda a: a.name) if adapter.hardware == hw.name]
    # adapters are read from the training workspace (artifacts/<run_id>/), mounted read-only
    artifacts: dict[str, Any] = {}
    if dep.engine == "vllm" and any(dep.adapters_of(m) for m in dep.models):
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
        "vllm": {
            "container": vllm_container(),
            "models": _models(plan, dep, vllm_configs) if dep.engine == "vllm" else [],
            "rollingUpdate": {"maxSurge": dep.update["max_surge"], "maxUnavailable": dep.update["max_unavailable"]},
            "pdb": {"maxUnavailable": PDB_MAX_UNAVAILABLE},
            "preStopSeconds": prestop_seconds(plan),
            "terminationGracePeriodSeconds": termination_grace_seconds(plan),
        },
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
                "targetCPUUtilizationPercentage": autoscale.get("cpu_percent", HPA_CPU_PERCENT_DEFAULT),
                "inFlightPerPod": autoscale.get("inflight", 0),  # 0: CPU only
            },
            "pdb": {"minAvailable": 1},
            "secretEnv": secret_env,
        },
        "ray": _ray(plan, dep, serve_config),
        "monitoring": _monitoring(plan, dep),
        "ingress": ingress,
        "modelCache": {"size": "200Gi"},
        "artifacts": artifacts,
        "training": {"workspaceClaim": f"{plan.project}-workspace", "workspaceDir": trainer.WORKSPACE, "jobs": jobs,
                     # `vilms train`'s exit code for a gate that did not pass: the Job fails at once, no retry
                     "gateExitCode": int(ExitCode.GATE),
                     "trainJob": trainjob_runtime(),
                     "nodeSelector": {"nvidia.com/gpu.product": hw.gpu_type} if hw.gpu_type else {}},
    }
