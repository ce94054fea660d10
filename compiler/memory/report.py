"""How estimates are shown: the aligned table and the memory section of ``vilms explain``."""

from __future__ import annotations

from collections.abc import Mapping

from vilms.compiler.memory.estimate import GIB, Estimate
from vilms.compiler.memory.placement import estimate_deployment, placements, shares_hardware
from vilms.compiler.memory.serving import runs_vllm
from vilms.compiler.memory.strategy import choose_strategy
from vilms.compiler.plan import Adapter, Deployment, Plan

ROW_NAMES = {
    "weights": "weights", "kv_cache": "KV cache", "lora": "LoRA / adapters", "optimizer": "grads + optimizer",
    "activations": "activations", "logits": "logits", "all_gather": "FSDP all-gather",
    "runtime": "runtime overhead",
}


def _rows(est: Estimate) -> list[tuple[str, str, str]]:
    """(component, GiB, how) rows of one estimate, its label first."""
    rows = [(est.label, "", "")]
    if not est.known:
        rows.append(("  estimate", "unknown", "; ".join(est.notes)))
        if est.budget is not None:
            rows.append(("  budget", _num(est.budget), est.budget_note))
        return rows
    for comp in Estimate.COMPONENTS:
        value = getattr(est, comp)
        if value:
            rows.append((f"  {ROW_NAMES[comp]}", _num(value), est.details.get(comp, "")))
    rows.append(("  total", _num(est.total), ""))
    if est.budget is not None:
        rows.append(("  budget", _num(est.budget), est.budget_note))
    rows.append(("  verdict", "", _verdict(est)))
    return rows


def format_table(estimates: Estimate | Mapping[str, Estimate]) -> str:
    """An aligned table: component, GiB, how it was computed; then total, budget, verdict."""
    if isinstance(estimates, Estimate):
        estimates = {estimates.label: estimates}
    rows = [row for est in estimates.values() for row in _rows(est)]
    notes = sorted({n for e in estimates.values() for n in e.notes if e.known})
    width = max(len(r[0]) for r in rows)
    num_width = max(max(len(r[1]) for r in rows), len("GiB"))
    lines = [f"{'component':<{width}}  {'GiB':>{num_width}}  how"]
    lines.append("-" * len(lines[0].rstrip()))
    for name, num, how in rows:
        lines.append(f"{name:<{width}}  {num:>{num_width}}  {how}".rstrip())
    lines.extend(f"note: {n}" for n in notes)
    return "\n".join(lines)


def _verdict(est: Estimate) -> str:
    if est.budget is None:
        return "no hardware profile to check"
    free = est.budget - est.total
    if free >= 0:
        return f"fits ({free / GIB:.2f} GiB free, {100 * est.total / max(est.budget, 1):.0f}% used)"
    return f"DOES NOT FIT ({-free / GIB:.2f} GiB over)"


def _num(n: int) -> str:
    return f"{n / GIB:.2f}"


def explain_lines(plan: Plan, dep: Deployment) -> list[str]:
    """The memory section of ``vilms explain DEPLOYMENT``."""
    per_model, total = estimate_deployment(plan, dep)
    shown: dict[str, Estimate] = dict(per_model)
    if len(per_model) > 1 and shares_hardware(dep):
        shown["total"] = total
    lines = placement_lines(plan, dep) if runs_vllm(dep.engine) else []
    lines.append("memory:")
    lines.extend("  " + line for line in format_table(shown).splitlines())
    trained = [a for a in plan.adapters.values() if a.base in dep.models]
    for adapter in sorted(trained, key=lambda a: a.name):
        lines.extend(training_lines(plan, adapter))
    return lines


def training_lines(plan: Plan, adapter: Adapter) -> list[str]:
    """One adapter's training: the strategy and why, then one GPU's memory under it; on a GPU
    profile of several GPUs, under DDP and FSDP both, so the choice can be checked."""
    chosen = choose_strategy(plan, adapter)
    hw = plan.hardware.get(adapter.hardware) if adapter.hardware else None
    unit = "GPU" if hw is not None and hw.kind == "gpu" else "process"
    lines = [f"training {adapter.name}: {chosen.name} on {chosen.world} {unit}{'s' if chosen.world > 1 else ''} "
             f"({chosen.reason})"]
    if unit == "GPU" and chosen.world > 1:
        table = format_table({"ddp": chosen.ddp, "fsdp": chosen.fsdp})
    else:
        table = format_table(chosen.estimate)
    lines.extend("  " + line for line in table.splitlines())
    return lines


def placement_lines(plan: Plan, dep: Deployment) -> list[str]:
    """Where each vLLM (or Ray Serve LLM) model of ``dep`` runs: parallelism, GPUs, nodes, replicas, and why."""
    lines = ["placement:"]
    for name, p in placements(plan, dep).items():
        where = f"{p.gpus} GPU(s) per replica" + (f" on {p.nodes} nodes of {p.gpus_per_node}" if p.nodes > 1 else "")
        per_gpu = f", {p.per_gpu_bytes / GIB:.2f} GiB per GPU" if p.per_gpu_bytes is not None and p.gpus else ""
        seqs = f", max-num-seqs {p.max_num_seqs}" if p.max_num_seqs else ""
        lines.append(f"  {name}: tensor parallel {p.tensor_parallel}, pipeline parallel {p.pipeline_parallel}: "
                     f"{where}, {p.replicas} replica(s){per_gpu}{seqs}")
        lines.append(f"    why: {p.reason}")
    return lines
