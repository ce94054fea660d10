"""``generated/<deployment>/vllm/<model>.yaml``: a ``vllm serve --config`` file per model.

Keys are vLLM's long flag names. Tensor and pipeline parallel and ``max-num-seqs`` come
from the placement (:mod:`vilms.compiler.memory.placement`). LoRA is enabled whenever the
deployment serves an alias with an adapter, released or not, with ``max-lora-rank`` the
smallest allowed value ≥ the largest adapter rank and a slot per declared adapter; released
adapters are not named here: the gateway loads them into every engine at run time
(``/v1/load_lora_adapter``), so a release or rollback never changes an engine's config.
"""

from __future__ import annotations

import math
from typing import Any

from vilms.compiler.facts import vllm as facts
from vilms.compiler.memory import Placement, estimate_model, placements
from vilms.compiler.plan import Deployment, Plan


def memory_utilizations(plan: Plan, dep: Deployment) -> dict[str, float]:
    """Fraction of accelerator memory the vLLM engine of each model of ``dep`` may take.

    Under Helm each engine is a pod with GPUs of its own, and on a compose GPU host each is
    pinned to GPUs of its own. On a Jetson every engine sees the same unified memory, and
    vLLM pre-allocates its whole share at start, so the budget is split in proportion to each
    engine's estimated need:
    whenever the memory planner finds the deployment fits, every engine gets at least what
    it needs. Engines with an unknown estimate get equal shares.
    """
    budget = facts.JETSON_MEMORY_UTILIZATION if dep.hardware.kind == "jetson" else facts.GPU_MEMORY_UTILIZATION
    if dep.target == "helm" or dep.hardware.kind == "gpu" or len(dep.models) <= 1:
        return {m: budget for m in dep.models}
    needs = {m: estimate_model(plan, dep, m) for m in dep.models}
    if all(e.known and e.total > 0 for e in needs.values()):
        whole = sum(e.total for e in needs.values())
        shares = {m: e.total / whole for m, e in needs.items()}
    else:
        shares = {m: 1 / len(dep.models) for m in dep.models}
    return {m: max(0.01, math.floor(budget * share * 1000) / 1000) for m, share in shares.items()}


def max_lora_rank(rank: int) -> int:
    return next(r for r in facts.MAX_LORA_RANKS if r >= rank)


def model_path(plan: Plan, model_name: str) -> str:
    source = plan.models[model_name].source
    return source.ref if source.scheme == "hf" else f"{facts.MODELS_DIR}/{source.ref}"


def vllm_configs(plan: Plan, dep: Deployment) -> dict[str, dict[str, Any]]:
    """The ``vllm serve --config`` mapping of every model ``dep`` serves."""
    utilization = memory_utilizations(plan, dep)
    places = placements(plan, dep)
    return {m: vllm_config(plan, dep, m, utilization[m], places[m]) for m in dep.models}


def vllm_config(plan: Plan, dep: Deployment, model_name: str, utilization: float, place: Placement) -> dict[str, Any]:
    model = plan.models[model_name]
    config: dict[str, Any] = {
        "model": model_path(plan, model_name),
        "served-model-name": [model_name],
        "host": "0.0.0.0",
        "port": facts.PORT,
        "max-model-len": dep.context_of(model_name),
        "dtype": model.dtype,
        "tensor-parallel-size": place.tensor_parallel,
        "gpu-memory-utilization": utilization,
    }
    if place.pipeline_parallel > 1:
        config["pipeline-parallel-size"] = place.pipeline_parallel
    if model.source.revision:
        config["revision"] = model.source.revision
    if "vllm" in model.quantization:
        config["quantization"] = model.quantization["vllm"]
    if place.max_num_seqs is not None:
        config["max-num-seqs"] = place.max_num_seqs
    if model.task == "embedding":
        config["runner"] = "pooling"
    adapters = dep.adapters_of(model_name)
    if adapters:
        ranks = [plan.adapters[a].rank for a in adapters]
        config["enable-lora"] = True
        config["max-lora-rank"] = max_lora_rank(max(ranks))
        config["max-loras"] = len(adapters)
        config["max-cpu-loras"] = len(adapters)
    return config
