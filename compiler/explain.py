"""`vilms explain DEPLOYMENT`: the resolved plan of one deployment, in words."""

from __future__ import annotations

from vilms.compiler.errors import UsageError
from vilms.compiler.memory import explain_lines
from vilms.compiler.plan import Deployment, Plan
from vilms.compiler.render.ray_serve import layout
from vilms.compiler.render.routes import backend_id, endpoint
from vilms.compiler.suggest import did_you_mean
from vilms.compiler.units import format_bytes


def explain_deployment(plan: Plan, name: str) -> str:
    if name not in plan.deployments:
        raise UsageError(f"unknown deployment {name!r}{did_you_mean(name, plan.deployments)}",
                         hint=f"deployments: {', '.join(sorted(plan.deployments))}")
    dep = plan.deployments[name]
    hw = dep.hardware
    lines = [
        f"deployment {dep.name}: target {dep.target}, engine {dep.engine}, replicas {dep.replicas}",
        f"hardware {hw.name}: {hw.kind}, memory {format_bytes(hw.memory_bytes)}"
        + (f", {hw.gpus} x {format_bytes(hw.gpu_memory_bytes)} GPU" if hw.kind == "gpu" else "")
        + (f" per node, {hw.nodes} nodes" if hw.nodes > 1 else "")
        + (f", JetPack {hw.jetpack}" if hw.jetpack else ""),
        "aliases:",
    ]
    for alias_name in dep.aliases:
        up = dep.upstreams[alias_name]
        alias = plan.aliases[alias_name]
        state = ""
        if up.adapter:
            state = f" + adapter {up.adapter} ({'released ' + str(plan.adapters[up.adapter].release) if up.released else 'not released'})"
        target = f"{endpoint(dep, up.model)}" if up.released else "fallbacks"
        lines.append(f"  {alias_name} → {up.model}{state} as {up.name!r} via {backend_id(dep, up.model)} ({target}), context {up.context}")
        if alias.fallbacks:
            lines.append(f"    fallbacks: {', '.join(alias.fallbacks)}")
    if dep.engine == "ray":
        lines.extend(ray_lines(plan, dep))
    lines.extend(explain_lines(plan, dep))
    return "\n".join(lines)


def ray_lines(plan: Plan, dep: Deployment) -> list[str]:
    """The Ray cluster of an ``engine: ray`` deployment: groups, GPUs, each model's Serve deployment."""
    shape = layout(plan, dep)
    nodes = (f"{shape.initial_nodes} node(s), autoscaled {shape.min_nodes}..{shape.max_nodes}" if shape.autoscaling
             else f"{shape.initial_nodes} node(s)")
    lines = [
        f"ray: RayService {shape.service} (Ray Serve LLM), service {shape.service}-serve-svc",
        "  head group: no GPU (num-gpus 0: no replica lands there)",
        f"  worker group: {nodes} of {shape.gpus_per_node} GPU(s) ({dep.hardware.name})",
        f"  accelerator_type: {shape.accelerator_type or '-'} ({shape.accelerator_reason})",
    ]
    for m in shape.models:
        replicas = (f"replicas {m.min_replicas}..{m.max_replicas} (start {m.initial_replicas})"
                    if m.min_replicas != m.max_replicas else f"replicas {m.initial_replicas}")
        lines.append(f"  {m.model}: {replicas}, target_ongoing_requests {m.target_ongoing_requests}, "
                     f"TP {m.tensor_parallel} x PP {m.pipeline_parallel} ({m.gpus} GPU(s) per replica)")
        if m.lora_path:
            lines.append(f"    LoRA: <model>:<run_id> loaded on demand from {m.lora_path}/<run_id>/, "
                         f"{m.max_adapters} adapter(s) per replica")
    return lines
