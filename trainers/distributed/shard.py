"""Which micro-batches and eval batches each rank takes (deterministic; the data position stays global).

A global optimizer step consumes up to ``world × accumulation`` micro-batches (each
``batch_size`` examples) of the seeded epoch order, starting at the global position
``micro_index``; micro-batch ``g`` of the step goes to rank ``g % world``. Every rank runs
the same number of forward passes (``rounds``): a rank without a micro-batch in a round (the
short last step of an epoch) runs a zero-weighted one, so DDP's and FSDP's collectives
always line up.
"""

from __future__ import annotations

import math


def step_size(micro_index: int, micro_per_epoch: int, accumulation: int, world: int) -> int:
    """Micro-batches the step starting at ``micro_index`` consumes (fewer at the end of an epoch)."""
    return min(accumulation * world, micro_per_epoch - micro_index)


def rounds(n_global: int, world: int) -> int:
    return math.ceil(n_global / world)


def my_micro_batches(micro_index: int, n_global: int, rank: int, world: int) -> list[int | None]:
    """The global micro-batch indices rank ``rank`` runs this step, one per round (None: a zero-weighted pass)."""
    mine: list[int | None] = [micro_index + g for g in range(rank, n_global, world)]
    return mine + [None] * (rounds(n_global, world) - len(mine))


def my_eval_batches(n_examples: int, batch_size: int, rank: int, world: int) -> list[int | None]:
    """Start offsets of the eval batches rank ``rank`` scores, one per round (None: a pass that counts nothing)."""
    starts = list(range(0, n_examples, batch_size))
    mine: list[int | None] = list(starts[rank::world])
    return mine + [None] * (rounds(len(starts), world) - len(mine))
