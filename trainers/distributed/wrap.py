"""DDP or FSDP2 around the PEFT model (one process: no wrapper).

* DDP replicates the model; gradients of the trainable (LoRA) parameters are averaged.
* FSDP2 (``fully_shard``) shards every decoder layer, then the causal LM holding them: frozen
  base weights are sharded too, so each process holds ~1/world of them. The root is the
  causal LM (not the PEFT wrapper), so ``generate`` runs through the same hooks as training.

QLoRA with FSDP2 shards the packed 4-bit weights too (each keeps its quantisation state);
verified on CPU/gloo against one process (see docs/training.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from vilms.compiler.errors import ActionError

from .world import World


def wrap(model: Any, strategy: str, world: World) -> Any:
    """The module the training forward pass goes through (``model`` itself with one process)."""
    if world.size == 1:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        causal_lm = model.get_base_model()
        layer_types = set(getattr(causal_lm, "_no_split_modules", None) or ())
        layers = [m for m in causal_lm.modules() if type(m).__name__ in layer_types]
        if not layers:
            raise ActionError(f"FSDP: found no decoder layers ({', '.join(sorted(layer_types)) or 'none declared'})",
                              hint="use training.strategy: ddp for this model")
        for layer in layers:
            fully_shard(layer)
        fully_shard(causal_lm)
        return model
    import torch
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.cuda.current_device()] if world.backend == "nccl" else None
    return DistributedDataParallel(model, device_ids=ids)


@contextlib.contextmanager
def gradient_sync(wrapped: Any, model: Any, sync: bool) -> Iterator[None]:
    """Reduce gradients across ranks in this backward pass only when ``sync`` (the last micro-batch)."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(wrapped, DistributedDataParallel):
        with contextlib.nullcontext() if sync else wrapped.no_sync():
            yield
        return
    root = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(root, "set_requires_gradient_sync"):  # FSDP2
        root.set_requires_gradient_sync(sync)
    yield
