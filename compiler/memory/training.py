"""Training estimates: peak memory of training one adapter with the ViLMS trainer's recipe,
on one GPU (or one process) of a world of W processes.

Per adapter (PEFT + bitsandbytes + transformers' loss; reference/training.md §8)::

    weights     = 2·P (lora, bf16)  |  P_lin·(4 + 0.127)/8 + 4·(P_emb + P_head) (qlora, NF4 + DQ;
                  PEFT's prepare_model_for_kbit_training upcasts the 16-bit rest to fp32)
    lora        = 4 · N_lora,  N_lora = Σ_targets r·(d_in + d_out)·L   (fp32 adapters)
    optimizer   = 12 · N_lora  (fp32 grads + AdamW m, v)
    activations = L·b·s·h·2 + b·s·h·34 (checkpointing) | L·b·s·h·34 (none)   (bf16, CUDA;
                  on CPU fp32 and glibc's heap: :mod:`.cpu_training`)
    logits      = b·s·V·16     (bf16 logits, fp32 upcast, fp32 log-softmax, fp32 + bf16 grads)
    runtime     = 0.5 GiB CUDA context + 10 % fragmentation of the tensors above

Per GPU, W = GPUs per node × nodes (the processes `vilms train` starts by default; 1 on CPU,
Jetson and without a profile)::

    DDP   every GPU holds a full replica: the numbers above, whatever W
    FSDP  (FSDP2, fully_shard per decoder layer, then the root module):
          weights, lora, optimizer  ÷ W   (sharded; QLoRA's NF4 weights shard as well)
          activations, logits       per device, as DDP (each rank runs its own micro-batch)
          all-gather = root + layer + 2·4·N_lora/L
                root  = the root unit unsharded: embeddings, head and norms (P_emb + P_head + norms)
                        at their stored bytes (fully_shard keeps the root's parameters after
                        forward by default; counting every layer's norms here adds < 0.1 %)
                layer = one decoder layer unsharded: P_lin/L at 2 bytes (lora) or NF4 (qlora)
                2·4·N_lora/L = that layer's fp32 LoRA weights and their gradients before reduce-scatter

Budget: one GPU's memory on a GPU profile, memory − OS reserve otherwise. The strategy
(``training.strategy``, ``auto`` resolved) is chosen in :mod:`.strategy`.
"""

from __future__ import annotations

from vilms.compiler.memory.cpu_training import cpu_activations
from vilms.compiler.memory.estimate import GIB, MIB, Estimate, gib, mib, params_text
from vilms.compiler.memory.shapes import Shape, Sizing, sizing
from vilms.compiler.plan import Adapter, Hardware, Plan
from vilms.compiler.record import record

NF4_DOUBLE_QUANT_BITS = 4.127  # 4-bit NF4 + 0.127 bit/param constants with double quant (QLoRA paper)
NF4_BITS = 4.5  # without double quant: fp32 absmax per 64 weights
CUDA_CONTEXT = GIB // 2  # "CUDA context/allocator ≈ 0.5–1 GB" (reference §8)
# peak RSS of a whole `vilms train` process on CPU when its tensors are negligible (tiny llama,
# h64, 2 layers, b1 × s128: 495 MiB measured by bench/planner.py, cell 1; of it 437 MiB is Python +
# torch 2.13 + transformers 5.24 + peft 0.21 + vilms imported, the rest tokenizer, data, gate and
# the loss-curve PNG's matplotlib)
CPU_TRAINER_RUNTIME = 490 * MIB
FRAGMENTATION = 1.1  # "×1.1–1.2 fragmentation"
ACT_SAVED_BYTES = 2  # per layer input kept by gradient checkpointing (bf16)
ACT_LAYER_BYTES = 34  # Korthikanti et al. 2022 per-layer working set, s·b·h·34 (no score term with SDPA)


@record
class Recipe:
    """How a trainer holds its tensors. Defaults: the ViLMS trainer (PEFT + bitsandbytes +
    transformers' built-in loss); tests build other recipes for published setups."""

    double_quant: bool = True
    # bytes per non-4-bit parameter (embeddings, lm_head, norms) under QLoRA: PEFT's
    # prepare_model_for_kbit_training casts every fp16/bf16 parameter that is not Params4bit to fp32
    qlora_rest_bytes: int = 4
    adapter_bytes: int = 4  # PEFT keeps adapters in fp32 (autocast_adapter_dtype)
    optimizer_bytes: int = 12  # fp32 gradient + AdamW m and v per trainable parameter
    # bytes per logit over the batch: bf16 logits 2 + fp32 upcast 4 + fp32 log-softmax 4 +
    # fp32 grad 4 + bf16 grad 2 (§8's 2+4+4 is the floor); None = chunked/fused cross-entropy
    logit_bytes: int | None = 16
    cuda_context: int = CUDA_CONTEXT
    cpu_runtime: int = CPU_TRAINER_RUNTIME
    fragmentation: float = FRAGMENTATION


VILMS_TRAINER = Recipe()


def training_budget(hw: Hardware | None, world: int = 1) -> tuple[int | None, str]:
    """What one process may use: one GPU of a GPU profile (``world`` of them), else the machine's memory."""
    if hw is None:
        return None, "no hardware profile"
    if hw.kind == "gpu":
        nodes = f"{hw.nodes} node{'s' if hw.nodes > 1 else ''}"
        return hw.gpu_memory_bytes, f"{gib(hw.gpu_memory_bytes)} per GPU of {world} GPU{'s' if world > 1 else ''} on {nodes}"
    kind = "unified memory" if hw.kind == "jetson" else "memory"
    return hw.memory_bytes - hw.os_reserve_bytes, f"{gib(hw.memory_bytes)} {kind} − {gib(hw.os_reserve_bytes)} OS reserve"


def _weights(method: str, size: Sizing, recipe: Recipe, fp32: bool) -> tuple[int, str]:
    """The base model's weights: NF4 linear layers under QLoRA, else bf16 (fp32 without CUDA)."""
    if method == "qlora":
        bits = NF4_DOUBLE_QUANT_BITS if recipe.double_quant else NF4_BITS
        return (int(size.linear * bits / 8) + recipe.qlora_rest_bytes * size.rest,
                f"NF4{' + double quant' if recipe.double_quant else ''} {bits:g} bits × {params_text(size.linear)}"
                f" + {recipe.qlora_rest_bytes} bytes × {params_text(size.rest)} embeddings/norms")
    nbytes = 4 if fp32 else 2
    return nbytes * size.params, f"{'fp32' if fp32 else 'bf16'}, {nbytes} bytes × {params_text(size.params)}"


def _all_gather(method: str, size: Sizing, recipe: Recipe, fp32: bool, n_lora: int) -> tuple[int, str]:
    """FSDP's unsharded working set: the root unit, one decoder layer and that layer's LoRA weights + gradients."""
    layers = max(size.shape.layers, 1)
    layer_linear = size.linear // layers
    if method == "qlora":
        bits = NF4_DOUBLE_QUANT_BITS if recipe.double_quant else NF4_BITS
        root, layer = recipe.qlora_rest_bytes * size.rest, int(layer_linear * bits / 8)
        how = f"root {recipe.qlora_rest_bytes}·(P_emb + P_head + norms) + one layer NF4 P_lin/L"
    else:
        nbytes = 4 if fp32 else 2
        root, layer = nbytes * size.rest, nbytes * layer_linear
        how = f"root {nbytes}·(P_emb + P_head + norms) + one layer {nbytes}·P_lin/L"
    adapters = 2 * recipe.adapter_bytes * (n_lora // layers)
    return root + layer + adapters, f"{how} + 2·{recipe.adapter_bytes}·N_lora/L (its LoRA weights and gradients), unsharded"


def _activations(shape: Shape, b: int, s: int, checkpointing: bool) -> tuple[int, str]:
    """bf16 activations on a CUDA device (CPU: :mod:`.cpu_training`)."""
    L, h = shape.layers, shape.hidden
    if checkpointing:
        return L * b * s * h * ACT_SAVED_BYTES + b * s * h * ACT_LAYER_BYTES, "checkpointing: L·b·s·h·2 + b·s·h·34"
    return L * b * s * h * ACT_LAYER_BYTES, "no checkpointing: L·b·s·h·34"


def _trainable(adapter: Adapter, shape: Shape) -> int:
    """LoRA parameters plus the modules trained in full (``modules_to_save``)."""
    lora = adapter.lora
    n_lora = shape.lora_params(int(lora["r"]), lora["target_modules"])
    return n_lora + sum(shape.full_params(m) for m in lora.get("modules_to_save", ()))


def estimate_training(plan: Plan, adapter: Adapter, recipe: Recipe = VILMS_TRAINER, *,
                      strategy: str = "ddp", world: int = 1) -> Estimate:
    """Peak memory of one process of ``world`` training ``adapter`` with ``strategy`` (reference §8)."""
    hw = plan.hardware.get(adapter.hardware) if adapter.hardware else None
    budget, budget_note = training_budget(hw, world)
    label = f"training {adapter.name} ({adapter.method}, {adapter.base}): {_where(hw, strategy, world)}"
    size = sizing(plan.models[adapter.base])
    if size is None:
        return Estimate.unknown(label, f"{adapter.base}: memory unknown (declare params: or architecture:)",
                                budget, budget_note)
    shape = size.shape
    cuda = hw is None or hw.cuda
    fp32 = not cuda  # the trainer uses fp32 where there is no CUDA bf16
    t = adapter.training
    b, s = int(t["batch_size"]), int(t["seq_len"])
    notes = () if size.exact else (f"{adapter.base}: no architecture, activations and LoRA shapes assume {shape.source}'s shape",)
    weights, weights_how = _weights(adapter.method, size, recipe, fp32)
    trainable = _trainable(adapter, shape)
    lora_bytes = recipe.adapter_bytes * trainable
    optimizer = recipe.optimizer_bytes * trainable
    if cuda:
        activations, act_how = _activations(shape, b, s, t.get("gradient_checkpointing", True))
    else:
        activations, act_how = cpu_activations(shape, adapter.lora, adapter.method, b, s,
                                               t.get("gradient_checkpointing", True))
    logits = 0 if recipe.logit_bytes is None else b * s * shape.vocab * recipe.logit_bytes
    lora = adapter.lora
    details = {
        "weights": weights_how,
        "lora": f"{params_text(trainable)} trainable (r={lora['r']}, {len(lora['target_modules'])} modules) × {recipe.adapter_bytes} bytes",
        "optimizer": f"AdamW, {recipe.optimizer_bytes} bytes × trainable",
        "activations": f"{act_how}, b={b}, s={s}",
        "logits": "chunked loss" if recipe.logit_bytes is None else f"b·s·V·{recipe.logit_bytes}",
    }
    all_gather = 0
    if strategy == "fsdp":
        all_gather, details["all_gather"] = _all_gather(
            adapter.method, size, recipe, fp32, shape.lora_params(int(lora["r"]), lora["target_modules"]))
        weights, lora_bytes, optimizer = (_share(n, world) for n in (weights, lora_bytes, optimizer))
        if world > 1:
            for comp in ("weights", "lora", "optimizer"):
                details[comp] += f", ÷ {world} (sharded)"
    tensors = weights + lora_bytes + optimizer + logits + all_gather + (activations if cuda else 0)
    # on CPU the heap's retention of activations is part of their estimate (.cpu_training)
    runtime = int(tensors * (recipe.fragmentation - 1)) + (recipe.cuda_context if cuda else recipe.cpu_runtime)
    details["runtime"] = (f"×{recipe.fragmentation:g} fragmentation"
                          + (f" + {gib(recipe.cuda_context)} CUDA context" if cuda else f" + {mib(recipe.cpu_runtime)} trainer process"))
    return Estimate(label=label, weights=weights, lora=lora_bytes, optimizer=optimizer, activations=activations,
                    logits=logits, all_gather=all_gather, runtime=runtime, budget=budget, budget_note=budget_note,
                    details=details, notes=notes, approximate=not size.exact)


def _share(nbytes: int, world: int) -> int:
    """One rank's shard of ``nbytes`` split ``world`` ways (the largest shard: FSDP pads the last)."""
    return -(-nbytes // world)


def _where(hw: Hardware | None, strategy: str, world: int) -> str:
    if hw is not None and hw.kind == "gpu":
        return f"{strategy.upper()}, per GPU of {world}"
    return f"{strategy.upper()}, {world} process{'es' if world > 1 else ''}"
