"""Placement: how many GPUs, nodes and replicas each served model of a deployment gets, and
how vLLM splits it (tensor parallel within a node, pipeline parallel across nodes).

Only vLLM on a GPU profile has a choice to make (engine ``vllm``, and ``ray``: Ray Serve LLM runs
the same engine, a replica spanning nodes as one Ray placement group). Everything else is fixed:

- vLLM on Jetson: the board's one integrated GPU (TP 1, PP 1, 1 GPU);
- Ollama and llama.cpp: one server that spreads layers over every GPU of its host
  (``gpus`` = the profile's GPUs per node, 0 on CPU machines; TP and PP are 1).

vLLM on a GPU profile: a declared ``serving.<model>`` value is kept; what is left open is
searched in this order, taking the first layout whose per-GPU estimate fits
``gpu_memory × gpu-memory-utilization``:

- pipeline parallel 1, 2, … up to the profile's ``nodes`` (1 off helm: compose is one host);
- for each, tensor parallel 1, 2, 4, 8, … up to the GPUs of one node, only values vLLM
  accepts for the model's attention heads (:func:`tp_allowed`).

A replica of ``TP × PP`` GPUs that fits one node is one pod (``nodes`` 1); a larger one runs
one pod per pipeline stage with ``TP`` GPUs each (``nodes`` = PP, a LeaderWorkerSet group),
so it needs ``TP ≤`` GPUs per node and ``PP ≤`` nodes.

Per-GPU estimate of a layout (vLLM shards linear layers, embeddings, LoRA slots and KV heads
over TP, and layers over PP)::

    weights / (TP·PP) + KV cache · max(1, kv_heads // TP) / kv_heads / PP + LoRA / (TP·PP) + runtime

The runtime overhead (CUDA context, graphs, activation peak) is counted whole on every GPU.
:func:`problems` lists what :func:`placements` could not honour, as located errors.
"""

from __future__ import annotations

import dataclasses

from vilms.compiler.memory.estimate import Estimate, gib, total_of
from vilms.compiler.memory.serving import estimate_model, runs_vllm, serving_budget
from vilms.compiler.memory.shapes import sizing
from vilms.compiler.plan import Deployment, ModelServing, Plan
from vilms.compiler.record import record

MAX_TP = 512  # the schema's bound on tensor_parallel


@record
class Placement:
    """Where one served model runs: parallelism, GPUs and replicas, with the planner's reason."""

    model: str
    tensor_parallel: int
    pipeline_parallel: int
    gpus: int  # per replica (= tensor_parallel × pipeline_parallel for vLLM)
    nodes: int  # nodes one replica spans: 1 → a Deployment; > 1 → a LeaderWorkerSet group
    gpus_per_node: int  # GPUs each pod of a replica requests
    replicas: int
    max_num_seqs: int | None  # vLLM's max-num-seqs; None: vLLM's default
    per_gpu_bytes: int | None  # planner's estimate per GPU (None: unknown)
    weight_bytes: int | None  # the whole model's weights as served (None: unknown)
    reason: str  # how tensor_parallel was chosen


@record
class Problem:
    """A placement that cannot be honoured: where in vilms.yaml, what to say, a hint."""

    path: tuple[str, ...]
    message: str
    hint: str
    estimate: Estimate | None = None  # the per-GPU estimate that does not fit (None: not a memory problem)


def tp_allowed(heads: int, kv_heads: int, tp: int) -> bool:
    """vLLM's rule: the attention heads divide evenly over TP ranks
    (``ModelConfig.verify_with_parallel_config``), and the KV heads either divide over them
    or are replicated a whole number of times (``QKVParallelLinear``)."""
    if heads % tp:
        return False
    return kv_heads % tp == 0 if kv_heads >= tp else tp % kv_heads == 0


def nodes_of(dep: Deployment) -> int:
    """Nodes a replica may span: the profile's on helm; one host elsewhere."""
    return dep.hardware.nodes if dep.target == "helm" else 1


def layout_text(tp: int, pp: int) -> str:
    """``TP 2`` or ``TP 8 × PP 2`` (16 GPUs)."""
    return f"TP {tp}" + (f" × PP {pp} ({tp * pp} GPUs)" if pp > 1 else "")


def _powers_of_two(limit: int) -> list[int]:
    out, t = [], 1
    while t <= limit:
        out.append(t)
        t *= 2
    return out


def per_gpu(est: Estimate, tp: int, pp: int, kv_heads: int, budget: int, budget_note: str) -> Estimate:
    """``est`` (one whole copy of a model) split over ``tp × pp`` GPUs."""
    if not est.known:
        return Estimate.unknown(est.label, "; ".join(est.notes), budget, budget_note)
    shards = tp * pp
    kv_share = max(1, kv_heads // tp)
    kv = est.kv_cache * kv_share // kv_heads // pp
    details = dict(est.details)
    if shards > 1:
        for comp in ("weights", "lora"):
            if comp in details:
                details[comp] += f", ÷ {shards} GPUs"
        if "kv_cache" in details:
            split = f"{kv_share} of {kv_heads} KV heads" if kv_share * tp != kv_heads else f"÷ {tp}"
            details["kv_cache"] += f", {split}" + (f", ÷ {pp} stages" if pp > 1 else "")
        details["runtime"] = details.get("runtime", "") + ", on every GPU"
    return Estimate(label=f"{est.label}, per GPU of {layout_text(tp, pp)}", weights=est.weights // shards, kv_cache=kv,
                    lora=est.lora // shards, runtime=est.runtime, budget=budget, budget_note=budget_note,
                    details=details, notes=est.notes, approximate=est.approximate)


def _budget_per_gpu(dep: Deployment) -> tuple[int, str]:
    hw = dep.hardware
    return serving_budget(dataclasses.replace(hw, gpus=1), dep.engine)


def _layout(p: Placement, plan: Plan, dep: Deployment) -> Estimate:
    est = estimate_model(plan, dep, p.model)
    size = sizing(plan.models[p.model])
    kv_heads = size.shape.kv_heads if size else 1
    budget, note = _budget_per_gpu(dep)
    return per_gpu(est, p.tensor_parallel, p.pipeline_parallel, kv_heads, budget, note)


def estimate_per_gpu(plan: Plan, dep: Deployment, model: str) -> Estimate:
    """What one GPU of ``model``'s replica holds under its placement (vLLM on a GPU profile)."""
    return _layout(_place(plan, dep, model)[0], plan, dep)


def placements(plan: Plan, dep: Deployment) -> dict[str, Placement]:
    """Every served model of ``dep`` and where it runs (see the module doc)."""
    return {m: _place(plan, dep, m)[0] for m in dep.models}


def problems(plan: Plan, dep: Deployment) -> list[Problem]:
    """What the placements of ``dep`` cannot honour: declared values vLLM or the profile
    rejects, and models that fit no layout."""
    return [p for m in dep.models for p in _place(plan, dep, m)[1]]


def _place(plan: Plan, dep: Deployment, name: str) -> tuple[Placement, list[Problem]]:
    hw = dep.hardware
    declared = dep.serving_of(name)
    replicas = declared.replicas or dep.replicas
    if not runs_vllm(dep.engine) or hw.kind != "gpu":
        gpus = 1 if hw.kind == "jetson" else hw.gpus
        why = ("Jetson: the board's integrated GPU" if hw.kind == "jetson"
               else f"{dep.engine}: one server spreads layers over the host's GPUs" if hw.gpus
               else f"{dep.engine} on CPU")
        seqs = (declared.max_num_seqs or dep.parallel) if runs_vllm(dep.engine) else None
        est = estimate_model(plan, dep, name)
        return Placement(model=name, tensor_parallel=1, pipeline_parallel=1, gpus=gpus, nodes=1, gpus_per_node=gpus,
                         replicas=replicas, max_num_seqs=seqs, per_gpu_bytes=est.total if est.known else None,
                         weight_bytes=est.weights if est.known else None, reason=why), []
    return _place_vllm(plan, dep, name, replicas)


def _place_vllm(plan: Plan, dep: Deployment, name: str, replicas: int) -> tuple[Placement, list[Problem]]:
    hw = dep.hardware
    declared = dep.serving_of(name)
    at = ("deployments", dep.name, "serving", name)
    per_node, nodes = hw.gpus, nodes_of(dep)
    size = sizing(plan.models[name])
    exact = size is not None and size.exact
    heads, kv_heads = (size.shape.heads, size.shape.kv_heads) if size else (1, 1)
    tp_d, pp_d, gpus_d = declared.tensor_parallel, declared.pipeline_parallel, declared.gpus
    key = "tensor_parallel" if tp_d is not None else "gpus" if gpus_d is not None else "pipeline_parallel"

    # candidate layouts in order of preference: fewer stages first, then fewer GPUs per stage
    layouts: list[tuple[int, int]] = []
    if pp_d is not None:
        pps: list[int] | range = [pp_d]
    elif gpus_d is not None and tp_d is not None:
        pps = [gpus_d // tp_d] if gpus_d % tp_d == 0 else []
    else:
        pps = range(1, nodes + 1)
    for pp in pps:
        if gpus_d is not None:
            tps = [gpus_d // pp] if gpus_d % pp == 0 and (tp_d is None or tp_d * pp == gpus_d) else []
        elif tp_d is not None:
            tps = [tp_d]
        else:
            tps = [t for t in _powers_of_two(per_node) if not exact or tp_allowed(heads, kv_heads, t)]
        layouts.extend((tp, pp) for tp in tps)

    rejected: list[Problem] = []
    valid: list[tuple[int, int]] = []
    for tp, pp in layouts:
        if exact and not tp_allowed(heads, kv_heads, tp):
            rejected.append(Problem(at + (key,), f"tensor parallel {tp} does not divide the attention heads of "
                                    f"{name!r} ({heads} heads, {kv_heads} KV heads)",
                                    f"vLLM accepts tensor_parallel {_allowed_text(heads, kv_heads, per_node)} on "
                                    f"{hw.gpus} GPU(s) per node"))
        elif not _spannable(tp, pp, per_node, nodes):
            rejected.append(_span_problem(dep, tp, pp, at + (key,)))
        else:
            valid.append((tp, pp))
    if not layouts:
        rejected.append(_count_problem(declared, at))

    est = estimate_model(plan, dep, name)
    budget, budget_note = _budget_per_gpu(dep)
    found: list[Problem] = []
    chosen = None
    for tp, pp in valid:
        chosen = (tp, pp, per_gpu(est, tp, pp, kv_heads, budget, budget_note))
        if chosen[2].fits:
            break
    undeclared = tp_d is None and pp_d is None and gpus_d is None
    if chosen is None:
        found.append(rejected[0])
        tp, pp = tp_d or 1, pp_d or 1
        e = per_gpu(est, tp, pp, kv_heads, budget, budget_note)
        reason = "declared"
    else:
        tp, pp, e = chosen
        if not e.fits:
            found.append(_fit_problem(dep, name, tp, pp, e, at + (key,) if not undeclared else None))
        reason = _reason(tp, pp, undeclared, exact, heads, est.known, per_node)
    gpus = tp * pp
    spans = 1 if gpus <= per_node else pp
    return Placement(
        model=name, tensor_parallel=tp, pipeline_parallel=pp, gpus=gpus, nodes=spans,
        gpus_per_node=gpus if spans == 1 else tp, replicas=replicas,
        max_num_seqs=declared.max_num_seqs or dep.parallel,
        per_gpu_bytes=e.total if e.known else None, weight_bytes=est.weights if est.known else None,
        reason=reason,
    ), found


def _spannable(tp: int, pp: int, per_node: int, nodes: int) -> bool:
    """One pod on one node, or one pod of ``tp`` GPUs per stage on ``pp`` nodes."""
    if tp * pp <= per_node:
        return True
    return tp <= per_node and pp <= nodes


def _allowed_text(heads: int, kv_heads: int, limit: int) -> str:
    return ", ".join(str(t) for t in range(1, min(limit, MAX_TP) + 1) if tp_allowed(heads, kv_heads, t))


def _reason(tp: int, pp: int, undeclared: bool, exact: bool, heads: int, known: bool, per_node: int) -> str:
    if not undeclared:
        return "declared in serving"
    if not known:
        return "memory unknown (declare params: or architecture:): the smallest tensor parallel"
    what = (f"the smallest tensor parallel that divides the {heads} attention heads and fits the per-GPU estimate"
            if exact else "the smallest tensor parallel that fits the per-GPU estimate (no architecture: heads not checked)")
    if pp > 1:
        what += f"; {pp} pipeline stages" + (f" on {pp} nodes" if tp * pp > per_node else "") + ": one node is not enough"
    return what


def _count_problem(declared: ModelServing, at: tuple[str, ...]) -> Problem:
    tp, pp, gpus = declared.tensor_parallel, declared.pipeline_parallel, declared.gpus
    if tp is not None and pp is not None:
        return Problem(at + ("gpus",), f"gpus {gpus} is not tensor_parallel × pipeline_parallel ({tp} × {pp} = {tp * pp})",
                       "leave gpus out: it defaults to the product")
    other = "tensor_parallel" if tp is not None else "pipeline_parallel"
    return Problem(at + ("gpus",), f"gpus {gpus} is not a multiple of {other} {tp or pp}",
                   "gpus is tensor_parallel × pipeline_parallel")


def _span_problem(dep: Deployment, tp: int, pp: int, at: tuple[str, ...]) -> Problem:
    hw = dep.hardware
    if dep.target != "helm":
        return Problem(at, f"{tp * pp} GPUs per replica are more than the {hw.gpus} GPU(s) of hardware {hw.name!r}: "
                       f"target {dep.target} runs on one host", "only target helm runs a model across nodes (a LeaderWorkerSet)")
    if tp > hw.gpus:
        return Problem(at, f"tensor parallel {tp} is more than the {hw.gpus} GPU(s) of one node of {hw.name!r}",
                       "vLLM runs tensor parallel within a node and pipeline parallel across nodes: "
                       f"tensor_parallel ≤ {hw.gpus}, pipeline_parallel = the nodes a replica spans")
    return Problem(at, f"{pp} pipeline stages of {tp} GPUs need {pp} nodes; hardware {hw.name!r} has "
                   f"{hw.nodes} node(s) of {hw.gpus} GPU(s)", f"declare nodes: {pp} on hardware {hw.name}, or use fewer GPUs")


def _fit_problem(dep: Deployment, name: str, tp: int, pp: int, e: Estimate, at: tuple[str, ...] | None) -> Problem:
    hw = dep.hardware
    layout = layout_text(tp, pp)
    if at is None:
        span = f"{nodes_of(dep)} node(s) of {hw.gpus} × {gib(hw.gpu_memory_bytes)} GPU"
        return Problem(("deployments", dep.name, "hardware"),
                       f"model {name!r} fits no layout on {span}: {gib(e.total)} per GPU at best "
                       f"({layout}), {gib(e.budget or 0)} available ({e.budget_note})",
                       "use a quantized checkpoint (quantization.vllm: awq|gptq|fp8), lower the context or parallel, "
                       "or use a profile with more GPUs or nodes", e)
    return Problem(at, f"model {name!r} needs {gib(e.total)} per GPU on {layout}; one GPU gives "
                   f"{gib(e.budget or 0)} ({e.budget_note})",
                   "raise tensor_parallel or pipeline_parallel, or leave them out for the planner to choose", e)


# --- a deployment -------------------------------------------------------------------------
def gpu_vllm(dep: Deployment) -> bool:
    """vLLM (or Ray Serve LLM) on a GPU profile: every model on GPUs of its own, estimated per GPU."""
    return runs_vllm(dep.engine) and dep.hardware.kind == "gpu"


def estimate_serving(plan: Plan, dep: Deployment) -> dict[str, Estimate]:
    """Per served model of ``dep``: what one copy needs against its budget; for vLLM on GPUs,
    what one GPU of its placement holds."""
    if gpu_vllm(dep):
        return {name: estimate_per_gpu(plan, dep, name) for name in dep.models}
    return {name: estimate_model(plan, dep, name) for name in dep.models}


def shares_hardware(dep: Deployment) -> bool:
    """Models of a deployment share one machine's memory, except on helm (a Deployment per
    model, each pod with its own GPUs) and for vLLM on GPUs (each model pinned to its own)."""
    return dep.target != "helm" and not gpu_vllm(dep)


def estimate_deployment(plan: Plan, dep: Deployment) -> tuple[dict[str, Estimate], Estimate]:
    """Per-model estimates and their sum. With shared hardware (compose, local: Ollama keeps
    OLLAMA_MAX_LOADED_MODELS = number of models loaded at once) the sum is checked against one
    budget; where each model has GPUs of its own, the sum's budget is one per model."""
    per_model = estimate_serving(plan, dep)
    budget, note = _budget_per_gpu(dep) if gpu_vllm(dep) else serving_budget(dep.hardware, dep.engine)
    label = f"deployment {dep.name} on {dep.hardware.name}"
    if not shares_hardware(dep) and len(per_model) > 1:
        budget, note = budget * len(per_model), f"{len(per_model)} × ({note}), one per model"
    return per_model, total_of(label, list(per_model.values()), budget, note)


def deployment_fits(plan: Plan, dep: Deployment) -> bool:
    per_model, total = estimate_deployment(plan, dep)
    if shares_hardware(dep):
        return total.fits
    return all(e.fits for e in per_model.values())


def gpus_needed(plan: Plan, dep: Deployment) -> dict[str, int]:
    """GPUs each model of a one-host vLLM deployment takes: per replica × replicas."""
    return {m: p.gpus * p.replicas for m, p in placements(plan, dep).items()}
