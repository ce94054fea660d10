"""`vilms explain DEPLOYMENT`: the resolved plan of one deployment, in words."""

from __future__ import annotations

from vilms.compiler.errors import UsageError
from vilms.compiler.memory import explain_lines
from vilms.compiler.plan import Plan
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
    lines.extend(explain_lines(plan, dep))
    return "\n".join(lines)
