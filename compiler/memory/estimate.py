"""The estimate record: bytes one workload needs, by component, against its hardware budget;
and how its numbers are written in tables and notes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from vilms.compiler.record import record

GIB = 2**30
MIB = 2**20


@record
class Estimate:
    """Bytes one workload needs, by component, against what its hardware gives."""

    label: str  # what is estimated, e.g. "qwen2.5-1.5b (ollama q8_0)"
    weights: int = 0
    kv_cache: int = 0
    lora: int = 0  # adapter tensors: trainable LoRA weights, GGUF adapters, vLLM LoRA slots
    optimizer: int = 0  # gradients + optimizer states
    activations: int = 0
    logits: int = 0
    all_gather: int = 0  # FSDP: parameters and gradients held unsharded around one unit's forward/backward
    runtime: int = 0  # engine buffers, CUDA context, fragmentation
    budget: int | None = None  # None: no hardware profile to check against
    budget_note: str = ""  # how the budget was derived
    details: Mapping[str, str] = field(default_factory=dict)  # component → how it was computed
    notes: tuple[str, ...] = ()  # approximations made
    known: bool = True  # False: too little is known about the model to estimate
    approximate: bool = False  # True: the model's shape was borrowed from REFERENCE_SHAPES

    COMPONENTS = ("weights", "kv_cache", "lora", "optimizer", "activations", "logits", "all_gather", "runtime")

    @property
    def total(self) -> int:
        return sum(getattr(self, c) for c in self.COMPONENTS)

    @property
    def fits(self) -> bool:
        """True when the total fits the budget, or when there is nothing to check."""
        return not self.known or self.budget is None or self.total <= self.budget

    @property
    def headroom(self) -> int | None:
        return None if self.budget is None or not self.known else self.budget - self.total

    def as_dict(self, *, with_budget: bool = False) -> dict[str, int]:
        """Integers for ``memory_estimate`` in the training config (the trainer's key set);
        ``kv_cache_bytes`` is added for serving estimates, ``budget_bytes`` on request. FSDP's
        all-gather working set (mostly unsharded weights) counts as weights."""
        out = {
            "total_bytes": self.total,
            "weights_bytes": self.weights + self.all_gather,
            "adapter_bytes": self.lora,
            "optimizer_bytes": self.optimizer,
            "activations_bytes": self.activations + self.logits,
            "overhead_bytes": self.runtime,
        }
        if self.kv_cache:
            out["kv_cache_bytes"] = self.kv_cache
        if with_budget and self.budget is not None:
            out["budget_bytes"] = self.budget
        return out

    @classmethod
    def unknown(cls, label: str, reason: str, budget: int | None = None, budget_note: str = "") -> Estimate:
        return cls(label=label, budget=budget, budget_note=budget_note, notes=(reason,), known=False)


def total_of(label: str, parts: list[Estimate], budget: int | None, budget_note: str) -> Estimate:
    """The sum of several estimates that share one budget."""
    known = [p for p in parts if p.known]
    sums = {c: sum(getattr(p, c) for p in known) for c in Estimate.COMPONENTS}
    notes = tuple(n for p in parts for n in p.notes)
    return Estimate(label=label, **sums, budget=budget, budget_note=budget_note, notes=notes,
                    known=bool(known) and len(known) == len(parts), approximate=any(p.approximate for p in parts))



def gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n % GIB else f"{n // GIB} GiB"


def mib(n: int) -> str:
    return f"{n / MIB:.0f} MiB"


def params_text(n: int) -> str:
    return f"{n / 1e9:.2f} B params" if n >= 1e9 else f"{n / 1e6:.1f} M params"
