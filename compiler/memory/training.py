"""Training estimates: peak memory of training one adapter with the ViLMS trainer's recipe.

Per adapter (PEFT + bitsandbytes + transformers' loss; reference/training.md §8)::

    weights     = 2·P (lora, bf16)  |  P_lin·(4 + 0.127)/8 + 4·(P_emb + P_head) (qlora, NF4 + DQ;
                  PEFT's prepare_model_for_kbit_training upcasts the 16-bit rest to fp32)
    lora        = 4 · N_lora,  N_lora = Σ_targets r·(d_in + d_out)·L   (fp32 adapters)
    optimizer   = 12 · N_lora  (fp32 grads + AdamW m, v)
    activations = L·b·s·h·2 + b·s·h·34 (checkpointing) | L·b·s·h·34 (none)
    logits      = b·s·V·16     (bf16 logits, fp32 upcast, fp32 log-softmax, fp32 + bf16 grads)
    runtime     = 0.5 GiB CUDA context + 10 % fragmentation of the tensors above

Budget: one GPU's memory on a GPU profile, memory − OS reserve otherwise.
"""

from __future__ import annotations

from vilms.compiler.memory.estimate import GIB, MIB, Estimate, gib, mib, params_text
from vilms.compiler.memory.shapes import Shape, Sizing, sizing
from vilms.compiler.plan import Adapter, Hardware, Plan
from vilms.compiler.record import record

NF4_DOUBLE_QUANT_BITS = 4.127  # 4-bit NF4 + 0.127 bit/param constants with double quant (QLoRA paper)
NF4_BITS = 4.5  # without double quant: fp32 absmax per 64 weights
CUDA_CONTEXT = GIB // 2  # "CUDA context/allocator ≈ 0.5–1 GB" (reference §8)
# resident size of the trainer process itself on a CPU (Python + torch + transformers + peft
# imported): 413 MiB measured by bench/train.py on torch 2.13 CPU
CPU_TRAINER_RUNTIME = 420 * MIB
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


def training_budget(hw: Hardware | None) -> tuple[int | None, str]:
    if hw is None:
        return None, "no hardware profile"
    if hw.kind == "gpu":
        return hw.gpu_memory_bytes, f"one {gib(hw.gpu_memory_bytes)} GPU of {hw.name}"
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


def _activations(shape: Shape, b: int, s: int, checkpointing: bool, fp32: bool) -> tuple[int, str]:
    L, h = shape.layers, shape.hidden
    scale = 2 if fp32 else 1
    if checkpointing:
        return (L * b * s * h * ACT_SAVED_BYTES + b * s * h * ACT_LAYER_BYTES) * scale, "checkpointing: L·b·s·h·2 + b·s·h·34"
    return L * b * s * h * ACT_LAYER_BYTES * scale, "no checkpointing: L·b·s·h·34"


def _trainable(adapter: Adapter, shape: Shape) -> int:
    """LoRA parameters plus the modules trained in full (``modules_to_save``)."""
    lora = adapter.lora
    n_lora = shape.lora_params(int(lora["r"]), lora["target_modules"])
    return n_lora + sum(shape.full_params(m) for m in lora.get("modules_to_save", ()))


def estimate_training(plan: Plan, adapter: Adapter, recipe: Recipe = VILMS_TRAINER) -> Estimate:
    """Peak memory of training ``adapter`` on its hardware profile (reference §8)."""
    hw = plan.hardware.get(adapter.hardware) if adapter.hardware else None
    budget, budget_note = training_budget(hw)
    label = f"training {adapter.name} ({adapter.method}, {adapter.base})"
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
    activations, act_how = _activations(shape, b, s, t.get("gradient_checkpointing", True), fp32)
    logits = 0 if recipe.logit_bytes is None else b * s * shape.vocab * recipe.logit_bytes
    tensors = weights + lora_bytes + optimizer + activations + logits
    runtime = int(tensors * (recipe.fragmentation - 1)) + (recipe.cuda_context if cuda else recipe.cpu_runtime)
    lora = adapter.lora
    details = {
        "weights": weights_how,
        "lora": f"{params_text(trainable)} trainable (r={lora['r']}, {len(lora['target_modules'])} modules) × {recipe.adapter_bytes} bytes",
        "optimizer": f"AdamW, {recipe.optimizer_bytes} bytes × trainable",
        "activations": f"{act_how}, b={b}, s={s}",
        "logits": "chunked loss" if recipe.logit_bytes is None else f"b·s·V·{recipe.logit_bytes}",
        "runtime": f"×{recipe.fragmentation:g} fragmentation"
                   + (f" + {gib(recipe.cuda_context)} CUDA context" if cuda else f" + {mib(recipe.cpu_runtime)} trainer process"),
    }
    return Estimate(label=label, weights=weights, lora=lora_bytes, optimizer=optimizer, activations=activations,
                    logits=logits, runtime=runtime, budget=budget, budget_note=budget_note, details=details,
                    notes=notes, approximate=not size.exact)


def training_estimates(plan: Plan) -> dict[str, dict[str, int]]:
    """``memory_estimate`` for every adapter's training config (known estimates only)."""
    out = {}
    for name, adapter in plan.adapters.items():
        est = estimate_training(plan, adapter)
        if est.known:
            out[name] = est.as_dict()
    return out
