"""The distributed strategy of a training run: ``training.strategy`` with ``auto`` resolved.

DDP keeps a full replica per process; FSDP2 shards weights, gradients and optimizer state
across them. ``auto`` picks DDP when one device holds a replica, else FSDP.
"""

from __future__ import annotations

from vilms.compiler.plan import Adapter, Hardware, Plan
from vilms.compiler.record import record


@record
class Strategy:
    name: str  # ddp | fsdp
    reason: str  # one sentence: why


def choose_strategy(plan: Plan, adapter: Adapter) -> Strategy:
    declared = adapter.training["strategy"]
    if declared != "auto":
        return Strategy(declared, f"training.strategy is {declared}")
    return Strategy("ddp", "auto: DDP (the memory planner's choice is not wired yet)")


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
