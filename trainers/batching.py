"""Deterministic data order and batching (the data position a checkpoint records).

The held-out split and each epoch's order depend only on the seed, so a resumed run
replays exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from .encode import IGNORE_INDEX, Example


def split_rows(rows: Sequence[Any], eval_fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, eval): ``ceil(n·fraction)`` rows held out, chosen by the seed; at least one train row."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(rows) - 1, math.ceil(len(rows) * eval_fraction)) if eval_fraction > 0 else 0
    held = sorted(order[:n_eval])
    keep = sorted(order[n_eval:])
    return [rows[i] for i in keep], [rows[i] for i in held]


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    import torch

    generator = torch.Generator().manual_seed(seed * 1000003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def micro_batches_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """Right-pad to the longest example; padding is masked and ignored by the loss."""
    import torch

    width = max(len(ex.input_ids) for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, ex in enumerate(examples):
        n = len(ex.input_ids)
        ids[row, :n] = torch.tensor(ex.input_ids)
        labels[row, :n] = torch.tensor(ex.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batch_for(
    examples: Sequence[Example], order: Sequence[int], micro_index: int, batch_size: int, pad_id: int
) -> dict[str, Any]:
    picked = [examples[i] for i in order[micro_index * batch_size : (micro_index + 1) * batch_size]]
    return collate(picked, pad_id)
