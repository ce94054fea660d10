"""The whole plan against its hardware: every deployment and training run that does not fit,
with the table and a hint (``compiler/validate/fit.py`` turns them into located errors)."""

from __future__ import annotations

from vilms.compiler.memory import placement
from vilms.compiler.memory.estimate import gib
from vilms.compiler.memory.placement import estimate_deployment, gpu_vllm, shares_hardware
from vilms.compiler.memory.report import format_table
from vilms.compiler.memory.serving import DEFAULT_GGUF, GGUF_BPW, quant_of, runs_vllm
from vilms.compiler.memory.strategy import Strategy, choose_strategy
from vilms.compiler.plan import Adapter, Deployment, Hardware, Plan
from vilms.compiler.record import record


@record
class NotFit:
    """One workload that does not fit: where in vilms.yaml, what to say, and the table."""

    path: tuple[str, ...]
    message: str
    table: str
    hint: str


def check_plan(plan: Plan, *, fail_on_approximate: bool = True) -> list[NotFit]:
    """Every deployment and training run of ``plan`` that does not fit its hardware.

    ``fail_on_approximate=False`` lets estimates built on a borrowed shape (a model with
    ``params`` but no ``architecture``) pass even when they exceed the budget."""
    out = [n for dep in plan.deployments.values() for n in _check_deployment(plan, dep, fail_on_approximate)]
    for adapter in plan.adapters.values():
        out.extend(_check_training(plan, adapter, fail_on_approximate))
    return out


def _check_deployment(plan: Plan, dep: Deployment, fail_on_approximate: bool) -> list[NotFit]:
    if gpu_vllm(dep):
        return _check_gpus(plan, dep, fail_on_approximate)
    per_model, total = estimate_deployment(plan, dep)
    if shares_hardware(dep):
        failing = [total] if not total.fits else []
    else:
        failing = [e for e in per_model.values() if not e.fits]
    failing = [e for e in failing if fail_on_approximate or not e.approximate]
    if not failing:
        return []
    table = format_table({**per_model, "total": total} if len(per_model) > 1 else per_model)
    return [
        NotFit(
            path=("deployments", dep.name, "hardware"),
            message=(f"deployment {dep.name!r} needs {gib(est.total)} but hardware {dep.hardware.name!r} "
                     f"gives {gib(est.budget or 0)} ({est.budget_note})"),
            table=table,
            hint=_approximate_hint(plan, dep.models if est.approximate else ()) + _serving_hint(plan, dep),
        )
        for est in failing
    ]


def _check_gpus(plan: Plan, dep: Deployment, fail_on_approximate: bool) -> list[NotFit]:
    """vLLM on GPUs: each model's placement (per-GPU fit, parallelism vLLM and the profile
    accept); on one host, the models' GPUs together within the profile's."""
    out = []
    for problem in placement.problems(plan, dep):
        est = problem.estimate
        if est is not None and est.approximate and not fail_on_approximate:
            continue
        hint = problem.hint
        if est is not None and est.approximate:
            hint = _approximate_hint(plan, dep.models) + hint
        out.append(NotFit(path=problem.path, message=problem.message,
                          table=format_table(est) if est is not None else "", hint=hint))
    if dep.target != "helm":
        need = placement.gpus_needed(plan, dep)
        hw = dep.hardware
        if sum(need.values()) > hw.gpus:
            places = placement.placements(plan, dep)
            parts = ", ".join(f"{m} {places[m].gpus}" + (f" × {places[m].replicas} replicas" if places[m].replicas > 1 else "")
                              for m in need)
            out.append(NotFit(
                path=("deployments", dep.name, "hardware"),
                message=(f"the vLLM engines of deployment {dep.name!r} need {sum(need.values())} GPUs ({parts}) "
                         f"but hardware {hw.name!r} has {hw.gpus}: on one host each engine gets GPUs of its own"),
                table="", hint="serve fewer models, lower replicas or serving.<model>.tensor_parallel, "
                               "use a profile with more GPUs, or target helm"))
    return out


def _check_training(plan: Plan, adapter: Adapter, fail_on_approximate: bool) -> list[NotFit]:
    """One GPU's (one process's) share under the chosen strategy against one GPU's memory."""
    chosen = choose_strategy(plan, adapter)
    est = chosen.estimate
    if est.fits or (est.approximate and not fail_on_approximate):
        return []
    hw = plan.hardware[adapter.hardware or ""]
    gpu = hw.kind == "gpu"
    declared = adapter.training["strategy"] != "auto"
    if not gpu:
        how = ""
    elif chosen.name == "ddp":
        how = f" per GPU with DDP (a full replica on each of {chosen.world} GPU{'s' if chosen.world > 1 else ''})"
    else:
        how = f" per GPU with FSDP over {chosen.world} GPU{'s' if chosen.world > 1 else ''}"
    fixes = _training_fixes(adapter, hw, chosen)
    table = format_table(est if not gpu or chosen.world == 1 else {"ddp": chosen.ddp, "fsdp": chosen.fsdp})
    return [NotFit(
        path=("adapters", adapter.name, "training", "strategy") if declared else ("adapters", adapter.name, "hardware"),
        message=(f"training adapter {adapter.name!r} needs {gib(est.total)}{how} but hardware {adapter.hardware!r} gives "
                 + (est.budget_note if gpu else f"{gib(est.budget or 0)} ({est.budget_note})")),
        table=table,
        hint=_approximate_hint(plan, (adapter.base,) if est.approximate else ()) + ", ".join(fixes[:-1]) + ", or " + fixes[-1],
    )]


def _training_fixes(adapter: Adapter, hw: Hardware, chosen: Strategy) -> list[str]:
    """What would make one GPU's share fit, most direct first."""
    gpu = hw.kind == "gpu"
    if gpu and chosen.name == "ddp" and chosen.world > 1:
        fsdp = f"use training.strategy: fsdp or auto (FSDP over {chosen.world} GPUs needs {gib(chosen.fsdp.total)} per GPU)"
        if chosen.fsdp.fits:
            return [fsdp, "keep ddp on a profile whose GPUs hold a replica"]
        fixes = [fsdp]
    else:
        fixes = [f"add GPUs or nodes to hardware {hw.name!r} for FSDP to shard over"] if gpu else []
    if adapter.method == "lora":  # NF4 weights: 4× smaller than bf16 on a GPU, 8× than fp32 on a CPU
        fixes.append("use method: qlora")
    fixes.append("lower training.batch_size or training.seq_len")
    if not adapter.training.get("gradient_checkpointing", True):
        fixes.append("turn training.gradient_checkpointing on")
    else:
        fixes.append("keep gradient_checkpointing on")
    return [*fixes, "train on a larger hardware profile"]


def _approximate_hint(plan: Plan, model_names: tuple[str, ...]) -> str:
    guessed = sorted(m for m in model_names if plan.models[m].architecture is None)
    if not guessed:
        return ""
    return (f"declare architecture: (from config.json) for {', '.join(guessed)}: the estimate borrows a "
            "reference model's shape; otherwise ")


def _serving_hint(plan: Plan, dep: Deployment) -> str:
    parts = ["serve fewer or smaller models", "lower the deployment's context"]
    if dep.slots > 1:
        parts.append("lower parallel")
    if runs_vllm(dep.engine):
        parts.append("use a quantized checkpoint (quantization.vllm: awq|gptq|fp8)")
    else:
        default = DEFAULT_GGUF[dep.engine]  # spelt as quantization.<engine> takes it
        if any(GGUF_BPW[quant_of(plan.models[m], dep.engine).lower()] > GGUF_BPW[default.lower()] for m in dep.models):
            parts.append(f"pick a smaller quantization ({default})")
    return ", ".join(parts) + ", or use a larger hardware profile"
