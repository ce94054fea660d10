"""Activations of training on a CPU, the way the ViLMS trainer runs there.

What the trainer does without CUDA (``trainers/loader.py``): the base loads in fp32 (QLoRA: NF4
linears, fp32 rest, bf16 compute), attention is transformers' default ``sdpa``, and PyTorch's CPU
SDPA runs a flash kernel (with or without a padding mask) that saves a log-sum-exp per head, not
the b·heads·s² scores eager attention would keep. Tensors live on glibc's heap.

Per token and decoder layer, autograd saves (fp32 elements, counted with
``torch.autograd.graph.saved_tensors_hooks`` on the trainer's PEFT model; llama MLP, f = intermediate)::

    A = 5·h + 3·f + 2·kv·d + heads + 2          norms' inputs and outputs, q/k after RoPE, v,
                                                  the attention output before and after o_proj's
                                                  reshape, gate, act(gate), up, act·up; rstd, lse
      + Σ_targets r                               each LoRA A output (kept for B's gradient)
      + Σ_targets 1.75·d_in   (lora dropout > 0)  the dropout output and its mask

    saved       = L·b·s·4·A                 (no checkpointing)
                | L·b·s·4·h                 (checkpointing: each layer's input)
    one layer   = b·s·4·A                   (the layer being back-propagated, or recomputed)

glibc serves a tensor below 32 MiB (its largest dynamic mmap threshold) from the heap and keeps
the freed pages, so a process's peak RSS is more than its peak live tensors; a tensor of 32 MiB or
more is mmapped and returned when freed. The regime is chosen by one b·s·h fp32 tensor. Measured
with ``bench/planner.py`` (peak RSS of ``vilms train`` against these tensor counts; the factors
are fitted on grid cells 6, 7, 8 (heap) and 15, 16 (mmap); the other cells check them)::

    heap:  activations = 1.45·saved + 0.91·one layer     (no checkpointing)
                       = 1.45·saved + 3.38·one layer     (checkpointing: recompute + backward)
    mmap:  activations = saved + 0.63·one layer          (the layer's gradients in backward)
                       = saved + 1.91·one layer          (the recomputed layer and its gradients)
    QLoRA adds one layer's bf16 copies of every linear's input and output and its dequantised
    weights: b·s·2·Σ_linear (d_in + d_out) + 2·P_lin/L.

With ``MALLOC_MMAP_THRESHOLD_=4194304`` in the environment the heap regime's retention goes away
(measured on grid cells 6 and 7: peak RSS ≈ the live tensors), at the price of page faults on
every large tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vilms.compiler.memory.shapes import Shape
from vilms.compiler.record import record

FP32 = 4
COMPUTE_BF16 = 2  # QLoRA's bnb_4bit_compute_dtype (compiler/render/training.py)
DROPOUT_SAVED = 1.75  # fp32 elements per input element of a LoRA target under dropout (measured: saved-tensor hooks)
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc DEFAULT_MMAP_THRESHOLD_MAX on 64-bit (malloc/malloc.c)


@record
class Retention:
    """Peak-RSS bytes per byte of saved activations, and per byte of the layer in backward."""

    saved: float
    layer: float  # without checkpointing: that layer's gradients
    recompute: float  # with checkpointing: the recomputed layer and its gradients


# fitted with bench/planner.py: heap on cells 6, 7, 8; mmap on cells 15, 16 (saved = 1: munmap on free)
HEAP = Retention(saved=1.45, layer=0.91, recompute=3.38)
MMAP = Retention(saved=1.0, layer=0.63, recompute=1.91)


def saved_per_token_layer(shape: Shape, lora: Mapping[str, Any]) -> float:
    """A: fp32 elements autograd keeps per token in one decoder layer."""
    h, f, kv, d, heads = shape.hidden, shape.intermediate, shape.kv_heads, shape.head_dim, shape.heads
    per_layer = 5 * h + 3 * f + 2 * kv * d + heads + 2
    r, dropout = int(lora["r"]), float(lora.get("dropout", 0.0)) > 0
    for target in lora["target_modules"]:
        d_in, _, count = shape.module(target) or (h, h, shape.layers)
        share = count / max(shape.layers, 1)  # embed_tokens / lm_head: once per model, not per layer
        per_layer += share * (r + (DROPOUT_SAVED * d_in if dropout else 0))
    return per_layer


def qlora_layer_copies(shape: Shape, tokens: int) -> int:
    """One layer's bf16 input/output copies of its 4-bit linears and their dequantised weights."""
    h, f, kvd = shape.hidden, shape.intermediate, shape.kv_heads * shape.head_dim
    ad = shape.heads * shape.head_dim
    io = (h + ad) + 2 * (h + kvd) + (ad + h) + 2 * (h + f) + (f + h)
    return COMPUTE_BF16 * (tokens * io + shape.linear_params // max(shape.layers, 1))


def cpu_activations(shape: Shape, lora: Mapping[str, Any], method: str, b: int, s: int,
                    checkpointing: bool) -> tuple[int, str]:
    """Peak-RSS bytes of one training step's activations on CPU, and how they were counted."""
    tokens = b * s
    layer = FP32 * tokens * saved_per_token_layer(shape, lora)
    heap = FP32 * tokens * shape.hidden < MMAP_THRESHOLD_MAX
    keep = HEAP if heap else MMAP
    where = "glibc heap" if heap else "mmapped"
    if checkpointing:
        saved = FP32 * shape.layers * tokens * shape.hidden
        total = keep.saved * saved + keep.recompute * layer
        how = f"fp32, checkpointing: {keep.saved:g}·L·b·s·4h + {keep.recompute:g}·b·s·4·A"
    else:
        saved = shape.layers * layer
        total = keep.saved * saved + keep.layer * layer
        how = f"fp32, no checkpointing: {keep.saved:g}·L·b·s·4·A + {keep.layer:g}·b·s·4·A"
    how += f" ({where})"
    how += f", A = {saved_per_token_layer(shape, lora):,.0f} per token-layer (SDPA)"
    copies = qlora_layer_copies(shape, tokens) if method == "qlora" else 0
    if copies:
        how += " + one layer's bf16 dequantisation copies"
    return int(total) + copies, how
