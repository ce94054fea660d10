"""Serving estimates: what each model of a deployment needs on its engine, and the budget.

Per served model (all models of a deployment share its hardware, except on target helm
where every model's pods get GPUs of their own)::

    weights   = P · bits_per_weight / 8            GGUF quant (Ollama, llama.cpp) or vLLM dtype
    kv_cache  = 2 · L · kv · d · 2 bytes · context · slots
    runtime   = llama.cpp/Ollama compute buffers, or vLLM CUDA context + profiled peak
    lora      = adapter tensors (GGUF adapters; vLLM's max_loras × max_lora_rank slots)

Budgets: GPU = gpus × gpu_memory (× the gpu-memory-utilization ViLMS writes for vLLM);
Jetson = memory − OS reserve (vLLM: also capped by its Jetson utilisation, see
``compiler/facts/vllm.py``); CPU = memory − OS reserve.
"""

from __future__ import annotations

from vilms.compiler.facts import llamacpp, ollama, vllm
from vilms.compiler.memory.estimate import GIB, MIB, Estimate, gib, mib, params_text
from vilms.compiler.memory.shapes import LINEAR_MODULES, Sizing, sizing
from vilms.compiler.plan import Adapter, Deployment, Hardware, Model, Plan

# --- weights ------------------------------------------------------------------------------
# Bits per weight of whole GGUF files (tensor data + block scales; llama.cpp keeps some
# tensors at higher precision). Calibrated on llama.cpp tools/quantize QUANT_OPTIONS sizes
# for Llama-3-8B (8.03 B params): Q4_0 4.34 GiB, Q4_K_S 4.37, Q4_K_M 4.58, Q5_K_M 5.33,
# Q6_K 6.14, Q8_0 7.96 GiB; Q4_1/Q5_K_S from their block layouts.
GGUF_BPW = {
    "q4_0": 4.5, "q4_1": 5.0, "q4_k_s": 4.6, "q4_k_m": 4.85, "q5_k_s": 5.5, "q5_k_m": 5.7,
    "q6_k": 6.56, "q8_0": 8.5, "f16": 16.0,
}
DEFAULT_GGUF = {"ollama": ollama.DEFAULT_QUANT, "llamacpp": llamacpp.DEFAULT_QUANT}  # what the renderers pull
# vLLM --quantization → bits of the linear layers (embeddings and lm_head stay 16-bit):
# AWQ/GPTQ 4-bit with group-128 scales and zeros ≈ 4.25 bpw; fp8 8 bits; bitsandbytes NF4 + DQ.
VLLM_LINEAR_BITS = {"awq": 4.25, "gptq": 4.25, "fp8": 8.0, "bitsandbytes": 4.127}
DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}

# --- runtime overheads --------------------------------------------------------------------
# llama.cpp (and Ollama's runner): compute buffers "a few hundred MB" (reference §8) plus the
# output-logits buffer of one micro-batch (llamacpp.UBATCH tokens × vocab × fp32).
LLAMACPP_COMPUTE = 256 * MIB
# vLLM: CUDA context, cuBLAS workspaces and CUDA graphs ≈ 1 GiB, plus the profiled peak of a
# prefill chunk (2048 tokens × (6·f + 12·h) bytes) and the sampler's fp32 logits for
# max-num-seqs (256) sequences — 1.3–1.6 GiB for 1.5–8 B models; 1.5 GiB when the shape is unknown.
VLLM_CONTEXT = GIB
VLLM_PREFILL_TOKENS = 2048
VLLM_MAX_NUM_SEQS = 256
VLLM_RUNTIME_UNKNOWN = 3 * GIB // 2
VLLM_ENGINES = ("vllm", "ray")  # engines that run vLLM: Ray Serve LLM runs the same engine inside Ray


def runs_vllm(engine: str) -> bool:
    """vLLM itself, or Ray Serve LLM (vLLM in Ray actors): the same weights, KV cache and LoRA slots."""
    return engine in VLLM_ENGINES


# --- budgets ------------------------------------------------------------------------------
def serving_budget(hw: Hardware, engine: str) -> tuple[int, str]:
    """Bytes an engine may use on ``hw`` for one copy of a model, and how that was derived."""
    if hw.kind == "gpu":
        total = hw.gpus * hw.gpu_memory_bytes
        what = f"{hw.gpus} × {gib(hw.gpu_memory_bytes)} GPU"
        if runs_vllm(engine):
            share = vllm.GPU_MEMORY_UTILIZATION
            return int(total * share), f"{what} × gpu-memory-utilization {share}"
        return total, what
    free = hw.memory_bytes - hw.os_reserve_bytes
    what = f"{gib(hw.memory_bytes)} {'unified ' if hw.kind == 'jetson' else ''}memory − {gib(hw.os_reserve_bytes)} OS reserve"
    if hw.kind == "jetson" and runs_vllm(engine):
        share = vllm.JETSON_MEMORY_UTILIZATION
        capped = int(hw.memory_bytes * share)
        if capped < free:
            return capped, f"{gib(hw.memory_bytes)} unified memory × gpu-memory-utilization {share}"
    return free, what


# --- one model ----------------------------------------------------------------------------
def quant_of(model: Model, engine: str) -> str:
    """The quantisation ``engine`` serves ``model`` at ("" for unquantised vLLM)."""
    if engine in DEFAULT_GGUF:
        return model.quantization.get(engine, DEFAULT_GGUF[engine])
    return model.quantization.get("vllm", "")


def weight_bytes(model: Model, engine: str, size: Sizing) -> tuple[int, str]:
    """Weights resident while serving with ``engine``, and a description."""
    quant = quant_of(model, engine)
    if engine in DEFAULT_GGUF:
        bpw = GGUF_BPW[quant.lower()]
        return int(size.params * bpw / 8), f"GGUF {quant}, {bpw:g} bits/weight × {params_text(size.params)}"
    if quant:
        bits = VLLM_LINEAR_BITS[quant]
        return (int(size.linear * bits / 8) + 2 * size.rest,
                f"{quant}: {bits:g} bits × {params_text(size.linear)} linear + 16-bit rest")
    nbytes = DTYPE_BYTES[model.dtype]
    name = "bfloat16" if model.dtype == "auto" else model.dtype
    return nbytes * size.params, f"{name}, {nbytes} bytes × {params_text(size.params)}"


def _runtime(engine: str, size: Sizing) -> tuple[int, str]:
    shape = size.shape
    if engine in DEFAULT_GGUF:
        logits = llamacpp.UBATCH * shape.vocab * 4
        return LLAMACPP_COMPUTE + logits, f"compute buffers {LLAMACPP_COMPUTE // MIB} MiB + {llamacpp.UBATCH}-token logits"
    if not size.exact:
        return VLLM_RUNTIME_UNKNOWN, "CUDA context, CUDA graphs, activation peak (no architecture: 1.5 GiB)"
    peak = VLLM_PREFILL_TOKENS * (6 * shape.intermediate + 12 * shape.hidden) + VLLM_MAX_NUM_SEQS * shape.vocab * 4
    return VLLM_CONTEXT + peak, f"CUDA context + graphs 1 GiB, profiled peak {mib(peak)}"


def _max_lora_rank(rank: int) -> int:
    return next((r for r in vllm.MAX_LORA_RANKS if r >= rank), rank)


def slots_of(dep: Deployment, model_name: str) -> int:
    """Sequences the KV cache is sized for: ``serving.<model>.max_num_seqs`` (vLLM), else the
    deployment's."""
    declared = dep.serving_of(model_name).max_num_seqs if runs_vllm(dep.engine) else None
    return declared or dep.slots


def _kv_cache(dep: Deployment, model_name: str, size: Sizing) -> tuple[int, str]:
    """One KV cache per engine process: llama.cpp, Ollama and vLLM run one per base model
    (llama.cpp selects its released adapters per request)."""
    context = dep.context_of(model_name)
    per_token = size.shape.kv_bytes_per_token
    slots = slots_of(dep, model_name)
    how = f"{per_token // 1024} KiB/token × {context} context × {slots} slot(s)"
    return per_token * context * slots, how


def _adapters(engine: str, model: Model, adapters: list[Adapter], size: Sizing) -> tuple[int, str]:
    """vLLM's LoRA slots, or the GGUF adapters Ollama/llama.cpp load (f32); (0, "") for none."""
    if runs_vllm(engine) and adapters:
        rank = _max_lora_rank(max(a.rank for a in adapters))
        per_rank = size.shape.lora_params(1, LINEAR_MODULES)
        return (len(adapters) * rank * per_rank * DTYPE_BYTES[model.dtype],
                f"max-loras {len(adapters)} × max-lora-rank {rank} over all 7 projections")
    released = [a for a in adapters if a.release]
    if not released:
        return 0, ""
    # an Ollama derived model loads one adapter, a llama.cpp server every released one
    sizes = [4 * size.shape.lora_params(a.rank, a.lora["target_modules"]) for a in released]
    return (sum(sizes) if engine == "llamacpp" else max(sizes)), f"{len(released)} GGUF adapter(s), f32"


def estimate_model(plan: Plan, dep: Deployment, model_name: str) -> Estimate:
    """One served model of ``dep`` on its own: weights + KV cache + runtime + adapters."""
    model = plan.models[model_name]
    engine = dep.engine
    budget, budget_note = serving_budget(dep.hardware, engine)
    quant = quant_of(model, engine)
    label = f"{model_name} ({engine}{' ' + quant if quant else ''})"
    size = sizing(model)
    if size is None:
        return Estimate.unknown(label, f"{model_name}: memory unknown (declare params: or architecture:)",
                                budget, budget_note)
    notes: list[str] = []
    if not size.exact:
        notes.append(f"{model_name}: no architecture, KV cache and buffers assume {size.shape.source}'s shape")
    weights, weights_how = weight_bytes(model, engine, size)
    kv, kv_how = _kv_cache(dep, model_name, size)
    runtime, runtime_how = _runtime(engine, size)
    adapters = [plan.adapters[a] for a in dep.adapters_of(model_name)]
    lora, lora_how = _adapters(engine, model, adapters, size)
    details = {"weights": weights_how, "kv_cache": kv_how, "runtime": runtime_how}
    if lora_how:
        details["lora"] = lora_how
    return Estimate(label=label, weights=weights, kv_cache=kv, lora=lora, runtime=runtime,
                    budget=budget, budget_note=budget_note, details=details, notes=tuple(notes),
                    approximate=not size.exact)
