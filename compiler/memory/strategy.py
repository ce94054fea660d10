"""The distributed strategy of a training run: ``training.strategy`` with ``auto`` resolved.

DDP keeps a full replica per process; FSDP2 shards weights, gradients and optimizer state
across them (the per-GPU formulas are in :mod:`.training`). A declared ``ddp`` or ``fsdp``
is kept. ``auto`` picks DDP when one GPU holds a replica, else FSDP over the profile's
W = GPUs per node × nodes; with one GPU (and on CPU, Jetson or without a profile, one
process by default) it stays DDP, as sharding over one process saves nothing. Whether the
chosen strategy fits is the fit check's business (:mod:`.check`).
"""

from __future__ import annotations

from vilms.compiler.memory.estimate import Estimate, gib
from vilms.compiler.memory.training import estimate_training
from vilms.compiler.plan import Adapter, Hardware, Plan
from vilms.compiler.record import record


@record
class Strategy:
    name: str  # ddp | fsdp
    reason: str  # one sentence: why
    world: int  # processes the estimates assume: GPUs per node × nodes; 1 on CPU, Jetson, no profile
    ddp: Estimate  # one process's memory with a full replica
    fsdp: Estimate  # one process's memory with its FSDP shard

    @property
    def estimate(self) -> Estimate:
        """One process's (one GPU's) memory under the chosen strategy."""
        return self.ddp if self.name == "ddp" else self.fsdp


def choose_strategy(plan: Plan, adapter: Adapter) -> Strategy:
    hw = plan.hardware.get(adapter.hardware) if adapter.hardware else None
    world = world_size(hw)
    ddp = estimate_training(plan, adapter, strategy="ddp", world=world)
    fsdp = estimate_training(plan, adapter, strategy="fsdp", world=world)
    declared = adapter.training["strategy"]
    if declared != "auto":
        return Strategy(declared, f"training.strategy is {declared}", world, ddp, fsdp)
    name, reason = _auto(hw, world, ddp, fsdp)
    return Strategy(name, reason, world, ddp, fsdp)


def _auto(hw: Hardware | None, world: int, ddp: Estimate, fsdp: Estimate) -> tuple[str, str]:
    if hw is None or hw.kind != "gpu":
        where = "no hardware profile" if hw is None else f"a {hw.kind} profile"
        return "ddp", f"auto: one process by default on {where}"
    if not ddp.known:
        return "ddp", "auto: the model's size is unknown, so a replica per GPU"
    per_gpu = f"{gib(hw.gpu_memory_bytes)} per GPU"
    replica = f"a replica needs {gib(ddp.total)}"
    if ddp.fits:
        return "ddp", f"auto: {replica} ≤ {per_gpu}"
    if world == 1:
        return "ddp", f"auto: {replica} > {per_gpu}, and FSDP over one GPU shards nothing"
    share = f"FSDP over {world} GPUs needs {gib(fsdp.total)} each"
    return "fsdp", f"auto: {replica} > {per_gpu}; {share}" + ("" if fsdp.fits else f", still > {per_gpu}")


def world_size(hw: Hardware | None) -> int:
    """Processes of a training run by default: processes per node × nodes."""
    return default_nproc_per_node(hw) * (hw.nodes if hw is not None else 1)


def default_nproc_per_node(hw: Hardware | None) -> int:
    """Processes per node when `vilms train` is not told: one per GPU; one on CPU, Jetson and without a profile."""
    return hw.gpus if hw is not None and hw.kind == "gpu" else 1


def max_nproc_per_node(hw: Hardware | None) -> int | None:
    """The most processes a node may run: one per GPU; the declared cpus on CPU; one on Jetson (one integrated GPU)."""
    if hw is None:
        return None
    if hw.kind == "gpu":
        return hw.gpus
    if hw.kind == "jetson":
        return 1
    return hw.cpus


def training_estimates(plan: Plan) -> dict[str, dict[str, int]]:
    """``memory_estimate`` for every adapter's training config: one GPU's (one process's) share under
    the chosen strategy (known estimates only)."""
    out = {}
    for name, adapter in plan.adapters.items():
        est = choose_strategy(plan, adapter).estimate
        if est.known:
            out[name] = est.as_dict()
    return out
