"""vLLM's engine arguments of each served model, and ``generated/<deployment>/vllm/<model>.yaml``
(a ``vllm serve --config`` file per model).

:func:`engine_args` is the one mapping: keys are vLLM's Python names (the flag table's ``dest``);
the ``vllm serve`` config writes them as long flag names, Ray Serve LLM's ``engine_kwargs``
(:mod:`.ray_serve`) as they are, without the server's own (model, name, host, port). Tensor and pipeline parallel and ``max-num-seqs`` come
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


# the OpenAI server's own arguments: Ray Serve LLM sets the model and its name from model_loading_config
# (and refuses them in engine_kwargs) and serves HTTP itself
SERVER_ARGS = ("model", "served_model_name", "host", "port")


def flag_name(dest: str) -> str:
    """An engine argument's ``vllm serve`` long flag without its dashes (``max_model_len`` → ``max-model-len``)."""
    return dest.replace("_", "-")


def engine_args_of(plan: Plan, dep: Deployment) -> dict[str, dict[str, Any]]:
    """The vLLM engine arguments of every model ``dep`` serves, by vLLM's Python names (``dest``)."""
    utilization = memory_utilizations(plan, dep)
    places = placements(plan, dep)
    return {m: engine_args(plan, dep, m, utilization[m], places[m]) for m in dep.models}


def vllm_configs(plan: Plan, dep: Deployment) -> dict[str, dict[str, Any]]:
    """The ``vllm serve --config`` mapping of every model ``dep`` serves."""
    return {m: vllm_config(args) for m, args in engine_args_of(plan, dep).items()}


def vllm_config(args: dict[str, Any]) -> dict[str, Any]:
    """``vllm serve --config``: the engine arguments under their long flag names."""
    return {flag_name(dest): value for dest, value in args.items()}


def ray_engine_kwargs(args: dict[str, Any]) -> dict[str, Any]:
    """Ray Serve LLM's ``engine_kwargs``: the engine arguments without the server's own."""
    return {dest: value for dest, value in args.items() if dest not in SERVER_ARGS}


def engine_args(plan: Plan, dep: Deployment, model_name: str, utilization: float, place: Placement) -> dict[str, Any]:
    """One model's vLLM engine arguments (vLLM 0.33.0's ``dest`` names), the one source of its
    ``vllm serve`` config and of its Ray Serve LLM ``engine_kwargs``."""
    model = plan.models[model_name]
    args: dict[str, Any] = {
        "model": model_path(plan, model_name),
        "served_model_name": [model_name],
        "host": "0.0.0.0",
        "port": facts.PORT,
        "max_model_len": dep.context_of(model_name),
        "dtype": model.dtype,
        "tensor_parallel_size": place.tensor_parallel,
        "gpu_memory_utilization": utilization,
    }
    if place.pipeline_parallel > 1:
        args["pipeline_parallel_size"] = place.pipeline_parallel
    if model.source.revision:
        args["revision"] = model.source.revision
    if "vllm" in model.quantization:
        args["quantization"] = model.quantization["vllm"]
    if place.max_num_seqs is not None:
        args["max_num_seqs"] = place.max_num_seqs
    if model.task == "embedding":
        args["runner"] = "pooling"
    adapters = dep.adapters_of(model_name)
    if adapters:
        ranks = [plan.adapters[a].rank for a in adapters]
        args["enable_lora"] = True
        args["max_lora_rank"] = max_lora_rank(max(ranks))
        args["max_loras"] = len(adapters)
        args["max_cpu_loras"] = len(adapters)
    return args
