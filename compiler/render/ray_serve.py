"""Ray Serve LLM on a KubeRay RayService (``engine: ray``, target helm): the ``ray:`` section of values.yaml.

One Ray cluster per deployment serves every model: ``serveConfigV2`` (a ServeDeploySchema, as a YAML
string) runs one application, ``facts.ray.LLM_APP_IMPORT_PATH``, with one LLMConfig per served model:

- ``model_loading_config``: ``model_id`` the ViLMS model name (what the routes send), ``model_source``
  its weights (the Hugging Face repo id);
- ``engine_kwargs``: the model's vLLM engine arguments from :func:`.vllm.engine_args` (the same mapping
  that writes ``vllm serve --config``), without the server's own; tensor and pipeline parallel come
  from the placement (:mod:`vilms.compiler.memory.placement`);
- ``deployment_config.autoscaling_config``: ``serving.<model>.autoscale`` min/max (else the replicas,
  fixed), ``target_ongoing_requests`` = the engine's batch (max-num-seqs) plus the queue per replica
  that should add one (``autoscale.queue``, the same threshold KEDA uses for vLLM);
- ``accelerator_type``: ``facts.ray.ACCELERATOR_TYPES[gpu_type]``; omitted (with the reason in
  ``vilms explain``) when the profile has no gpu_type or one the table does not know, since the
  nodeSelector on gpu_type already pins the GPU model;
- ``runtime_env.env_vars.HF_TOKEN`` = ``${<token env>}`` when the model's token is not HF_TOKEN itself
  (every token is in the pods' environment under its own name; Ray expands ``${NAME}``);
- ``lora_config`` when the model has adapters: ``dynamic_lora_loading_path`` = ``artifact_store.uri``,
  where ``<model>:<run_id>`` is loaded from ``<uri>/<run_id>/`` on its first request.

The cluster: a head group without GPUs (``num-gpus: 0``: no replica lands there) and one GPU worker
group of the profile's nodes, as many as the replicas need (first-fit of each replica's GPUs on nodes
of ``gpus`` GPUs; a replica spanning nodes takes whole nodes), between the autoscale minimum and maximum.
"""

from __future__ import annotations

from typing import Any

from vilms.compiler.facts import ray, vllm
from vilms.compiler.memory.placement import Placement, placements
from vilms.compiler.naming import ray_service_name
from vilms.compiler.plan import Deployment, Hardware, Plan
from vilms.compiler.record import record
from vilms.compiler.render.vllm import model_path, ray_engine_kwargs
from vilms.compiler.resolve import AUTOSCALE_QUEUE_DEFAULT
from vilms.compiler.serialize import to_yaml

HF_TOKEN = "HF_TOKEN"  # what huggingface_hub (and so vLLM) reads


@record
class ModelLayout:
    """How one model runs on the Ray cluster (what ``vilms explain`` shows)."""

    model: str
    tensor_parallel: int
    pipeline_parallel: int
    gpus: int  # per replica
    min_replicas: int
    max_replicas: int
    initial_replicas: int
    target_ongoing_requests: int
    lora_path: str | None  # dynamic_lora_loading_path; None: no adapters
    max_adapters: int  # max_num_adapters_per_replica (0: no adapters)


@record
class RayLayout:
    """The Ray cluster of a deployment: its worker nodes and each model's replicas."""

    service: str  # the RayService's name
    accelerator_type: str | None
    accelerator_reason: str  # why accelerator_type is what it is (or why it is omitted)
    gpus_per_node: int
    min_nodes: int
    initial_nodes: int
    max_nodes: int
    models: tuple[ModelLayout, ...]

    @property
    def autoscaling(self) -> bool:
        return self.min_nodes != self.max_nodes


def accelerator_type(hw: Hardware) -> tuple[str | None, str]:
    """The LLMConfig ``accelerator_type`` of ``hw``'s GPUs, and why."""
    if not hw.gpu_type:
        return None, f"omitted: hardware {hw.name!r} declares no gpu_type"
    value = ray.ACCELERATOR_TYPES.get(hw.gpu_type)
    if value is None:
        return None, (f"omitted: gpu_type {hw.gpu_type!r} is not in facts.ray.ACCELERATOR_TYPES "
                      "(the nodeSelector still pins the GPU model)")
    return value, f"gpu_type {hw.gpu_type} is what Ray detects as {value}"


def _replicas(dep: Deployment, model: str, place: Placement) -> tuple[int, int, int, int]:
    """(min, initial, max, target ongoing requests) of one model's Serve deployment."""
    spec = dep.serving_of(model).autoscale
    low, high = spec.get("min", place.replicas), spec.get("max", place.replicas)
    initial = min(max(place.replicas, low), high)
    batch = place.max_num_seqs or dep.slots
    return low, initial, high, batch + spec.get("queue", AUTOSCALE_QUEUE_DEFAULT)


def nodes_for(replicas: list[Placement], counts: list[int], per_node: int) -> int:
    """Nodes of ``per_node`` GPUs that hold ``counts[i]`` replicas of ``replicas[i]``: first-fit
    decreasing; a replica spanning nodes takes ``nodes`` whole nodes."""
    whole = 0
    items: list[int] = []
    for place, count in zip(replicas, counts, strict=True):
        if place.nodes > 1 or place.gpus > per_node:
            whole += place.nodes * count
        else:
            items.extend([place.gpus] * count)
    free: list[int] = []
    for gpus in sorted(items, reverse=True):
        for i, left in enumerate(free):
            if left >= gpus:
                free[i] -= gpus
                break
        else:
            free.append(per_node - gpus)
    return whole + len(free)


def layout(plan: Plan, dep: Deployment) -> RayLayout:
    """The Ray cluster ``dep`` runs on (see the module doc)."""
    hw = dep.hardware
    places = placements(plan, dep)
    store = plan.artifact_store
    models = []
    for name in dep.models:
        place = places[name]
        low, initial, high, target = _replicas(dep, name, place)
        adapters = dep.adapters_of(name)
        models.append(ModelLayout(
            model=name, tensor_parallel=place.tensor_parallel, pipeline_parallel=place.pipeline_parallel,
            gpus=place.gpus, min_replicas=low, max_replicas=high, initial_replicas=initial,
            target_ongoing_requests=target,
            lora_path=store.uri if adapters and store is not None else None, max_adapters=len(adapters)))
    placed = [places[m.model] for m in models]
    per_node = max(hw.gpus, 1)
    accel, why = accelerator_type(hw)
    return RayLayout(
        service=ray_service_name(dep.name), accelerator_type=accel, accelerator_reason=why, gpus_per_node=hw.gpus,
        min_nodes=nodes_for(placed, [m.min_replicas for m in models], per_node),
        initial_nodes=nodes_for(placed, [m.initial_replicas for m in models], per_node),
        max_nodes=max(1, nodes_for(placed, [m.max_replicas for m in models], per_node)),
        models=tuple(models))


def llm_config(plan: Plan, model: ModelLayout, engine_args: dict[str, Any], accel: str | None) -> dict[str, Any]:
    """One ``llm_configs`` entry (Ray's LLMConfig)."""
    entry: dict[str, Any] = {
        "model_loading_config": {"model_id": model.model, "model_source": model_path(plan, model.model)},
        "engine_kwargs": ray_engine_kwargs(engine_args),
        "deployment_config": {"autoscaling_config": {
            "min_replicas": model.min_replicas, "initial_replicas": model.initial_replicas,
            "max_replicas": model.max_replicas, "target_ongoing_requests": model.target_ongoing_requests}},
    }
    if accel is not None:
        entry["accelerator_type"] = accel
    token = plan.models[model.model].token_env
    if token and token != HF_TOKEN:  # Ray expands ${NAME} in runtime_env env_vars from the worker's environment
        entry["runtime_env"] = {"env_vars": {HF_TOKEN: f"${{{token}}}"}}
    if model.lora_path is not None:
        entry["lora_config"] = {"dynamic_lora_loading_path": model.lora_path,
                                "max_num_adapters_per_replica": model.max_adapters}
    return entry


def serve_config(plan: Plan, dep: Deployment, engine_args: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``serveConfigV2`` as data: a ServeDeploySchema with the one Ray Serve LLM application."""
    shape = layout(plan, dep)
    configs = [llm_config(plan, m, engine_args[m.model], shape.accelerator_type) for m in shape.models]
    return {"applications": [{
        "name": ray.LLM_APP_NAME,
        "route_prefix": ray.ROUTE_PREFIX,
        "import_path": ray.LLM_APP_IMPORT_PATH,
        "args": {"llm_configs": configs},
    }]}


def serve_config_text(plan: Plan, dep: Deployment, engine_args: dict[str, dict[str, Any]]) -> str:
    """``serveConfigV2``: the YAML string KubeRay hands to Ray Serve."""
    return to_yaml(serve_config(plan, dep, engine_args), source=None).decode("utf-8")


def storage_env(plan: Plan, dep: Deployment) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(plain env, secret env) every Ray pod needs for the artifact store, when ``dep`` serves adapters:
    Ray's S3 client (boto3) reads the credentials, endpoint and region from the environment."""
    store = plan.artifact_store
    if store is None or not any(dep.adapters_of(m) for m in dep.models):
        return [], []
    secret = f"{plan.project}-secrets"
    env = [{"name": ray.S3_ENV_REGION, "value": store.region}]
    secrets = [{"name": ray.S3_ENV_ACCESS_KEY_ID, "secretName": secret, "secretKey": store.access_key_id_env},
               {"name": ray.S3_ENV_SECRET_ACCESS_KEY, "secretName": secret, "secretKey": store.secret_access_key_env}]
    if store.endpoint is not None:
        env.insert(0, {"name": ray.S3_ENV_ENDPOINT, "value": store.endpoint})
    elif store.endpoint_env is not None:
        secrets.insert(0, {"name": ray.S3_ENV_ENDPOINT, "secretName": secret, "secretKey": store.endpoint_env})
    return env, secrets


def token_env(plan: Plan, dep: Deployment) -> list[dict[str, str]]:
    """Every served model's Hugging Face token from the project secret, each under its own name (one Ray pod
    loads every model; :func:`llm_config` points each model's HF_TOKEN at its own)."""
    tokens = sorted({plan.models[m].token_env for m in dep.models if plan.models[m].token_env})
    return [{"name": t, "secretName": f"{plan.project}-secrets", "secretKey": t} for t in tokens]


def head_group() -> dict[str, Any]:
    return {"rayStartParams": dict(ray.HEAD_GROUP_START_PARAMS), "resources": ray.HEAD_RESOURCES}


def container() -> dict[str, Any]:
    """Ports and probe paths of every Ray container (the chart has no literals of its own)."""
    return {"gcsPort": ray.GCS_PORT, "dashboardPort": ray.DASHBOARD_PORT, "clientPort": ray.CLIENT_PORT,
            "servePort": ray.SERVE_PORT, "serveHealthPath": ray.SERVE_HEALTH_PATH, "headHealthPath": ray.HEAD_HEALTH_PATH,
            "cacheDir": vllm.HF_HOME}
