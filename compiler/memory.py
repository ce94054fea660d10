"""The memory planner: does a deployment or a training run fit its hardware profile?

Estimates are arithmetic on the resolved plan (stdlib only, no I/O). Formulas follow
``reference/training.md`` §8; every constant below says where it comes from, and
``tests/compiler/test_memory.py`` holds the results to published measurements.

Serving, per served model (all models of a deployment share its hardware, except on
target helm where every model's pods get GPUs of their own)::

    weights   = P · bits_per_weight / 8            GGUF quant (Ollama, llama.cpp) or vLLM dtype
    kv_cache  = 2 · L · kv · d · 2 bytes · context · slots
    runtime   = llama.cpp/Ollama compute buffers, or vLLM CUDA context + profiled peak
    lora      = adapter tensors (GGUF adapters; vLLM's max_loras × max_lora_rank slots)

Training, per adapter (the ViLMS trainer: PEFT + bitsandbytes + transformers' loss)::

    weights     = 2·P (lora, bf16)  |  P_lin·(4 + 0.127)/8 + 4·(P_emb + P_head) (qlora, NF4 + DQ;
                  PEFT's prepare_model_for_kbit_training upcasts the 16-bit rest to fp32)
    lora        = 4 · N_lora,  N_lora = Σ_targets r·(d_in + d_out)·L   (fp32 adapters)
    optimizer   = 12 · N_lora  (fp32 grads + AdamW m, v)
    activations = L·b·s·h·2 + b·s·h·34 (checkpointing) | L·b·s·h·34 (none)
    logits      = b·s·V·16     (bf16 logits, fp32 upcast, fp32 log-softmax, fp32 + bf16 grads)
    runtime     = 0.5 GiB CUDA context + 10 % fragmentation of the tensors above

Budgets: GPU = gpus × gpu_memory (× 0.9 gpu-memory-utilization for vLLM); Jetson = memory −
OS reserve (vLLM: also ≤ 0.6 × memory, the utilisation ViLMS configures on unified memory);
CPU = memory − OS reserve. Training on a GPU profile gets one GPU's memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vilms.compiler.plan import Adapter, Deployment, Hardware, Model, Plan

GIB = 2**30
MIB = 2**20

# --- weights ------------------------------------------------------------------------------
# Bits per weight of whole GGUF files (tensor data + block scales; llama.cpp keeps some
# tensors at higher precision). Calibrated on llama.cpp tools/quantize QUANT_OPTIONS sizes
# for Llama-3-8B (8.03 B params): Q4_0 4.34 GiB, Q4_K_S 4.37, Q4_K_M 4.58, Q5_K_M 5.33,
# Q6_K 6.14, Q8_0 7.96 GiB; Q4_1/Q5_K_S from their block layouts.
GGUF_BPW = {
    "q4_0": 4.5, "q4_1": 5.0, "q4_k_s": 4.6, "q4_k_m": 4.85, "q5_k_s": 5.5, "q5_k_m": 5.7,
    "q6_k": 6.56, "q8_0": 8.5, "f16": 16.0,
}
DEFAULT_GGUF = {"ollama": "q4_K_M", "llamacpp": "q4_k_m"}  # what the renderers pull by default
# vLLM --quantization → bits of the linear layers (embeddings and lm_head stay 16-bit):
# AWQ/GPTQ 4-bit with group-128 scales and zeros ≈ 4.25 bpw; fp8 8 bits; bitsandbytes NF4 + DQ.
VLLM_LINEAR_BITS = {"awq": 4.25, "gptq": 4.25, "fp8": 8.0, "bitsandbytes": 4.127}
DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}
KV_BYTES = 2  # f16/bf16 KV cache: Ollama/llama.cpp default f16, vLLM kv-cache-dtype auto

# --- runtime overheads --------------------------------------------------------------------
# llama.cpp (and Ollama's runner): compute buffers "a few hundred MB" (reference §8) plus the
# output-logits buffer of one micro-batch (n_ubatch 512 × vocab × fp32).
LLAMACPP_COMPUTE = 256 * MIB
LLAMACPP_UBATCH = 512
# vLLM: CUDA context, cuBLAS workspaces and CUDA graphs ≈ 1 GiB, plus the profiled peak of a
# prefill chunk (2048 tokens × (6·f + 12·h) bytes) and the sampler's fp32 logits for
# max-num-seqs (256) sequences — 1.3–1.6 GiB for 1.5–8 B models; 1.5 GiB when the shape is unknown.
VLLM_CONTEXT = GIB
VLLM_PREFILL_TOKENS = 2048
VLLM_MAX_NUM_SEQS = 256
VLLM_RUNTIME_UNKNOWN = 3 * GIB // 2
VLLM_UTILIZATION = 0.9  # vllm --gpu-memory-utilization default
JETSON_VLLM_UTILIZATION = 0.6  # what ViLMS writes on unified memory (render/vllm.py)
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

# --- training ----------------------------------------------------------------------------
NF4_DOUBLE_QUANT_BITS = 4.127  # 4-bit NF4 + 0.127 bit/param constants with double quant (QLoRA paper)
NF4_BITS = 4.5  # without double quant: fp32 absmax per 64 weights
CUDA_CONTEXT = GIB // 2  # "CUDA context/allocator ≈ 0.5–1 GB" (reference §8)
# resident size of the trainer process itself on a CPU (Python + torch + transformers + peft
# imported): 413 MiB measured by bench/train.py on torch 2.13 CPU
CPU_TRAINER_RUNTIME = 420 * MIB
FRAGMENTATION = 1.1  # "×1.1–1.2 fragmentation"
ACT_SAVED_BYTES = 2  # per layer input kept by gradient checkpointing (bf16)
ACT_LAYER_BYTES = 34  # Korthikanti et al. 2022 per-layer working set, s·b·h·34 (no score term with SDPA)

LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
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


# --- shapes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """A llama-style dense decoder, as in config.json."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    source: str = "architecture"  # or the published model it was borrowed from

    @classmethod
    def of(cls, arch: Mapping[str, Any], source: str = "architecture") -> Shape:
        heads = int(arch["heads"])
        hidden = int(arch["hidden_size"])
        return cls(
            layers=int(arch["layers"]), hidden=hidden, heads=heads,
            kv_heads=int(arch.get("kv_heads") or heads),
            head_dim=int(arch.get("head_dim") or hidden // heads),
            intermediate=int(arch["intermediate_size"]), vocab=int(arch["vocab_size"]),
            tied=bool(arch.get("tie_word_embeddings", False)), source=source,
        )

    @property
    def linear_params(self) -> int:
        """P_lin = L·[h·a·d + 2·h·kv·d + a·d·h + 3·h·f]."""
        h, a, kv, d, f = self.hidden, self.heads, self.kv_heads, self.head_dim, self.intermediate
        return self.layers * (h * a * d + 2 * h * kv * d + a * d * h + 3 * h * f)

    @property
    def embedding_params(self) -> int:
        """P_emb + P_head (the head is free when tied to the embeddings)."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def norm_params(self) -> int:
        return self.hidden * (2 * self.layers + 1)

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params + self.norm_params

    @property
    def kv_bytes_per_token(self) -> int:
        """2 (K and V) · L · kv · d · 2 bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * KV_BYTES

    def module(self, name: str) -> tuple[int, int, int] | None:
        """(d_in, d_out, how many) of a LoRA target module, None when unknown."""
        h, a, kv, d, f, L = self.hidden, self.heads, self.kv_heads, self.head_dim, self.intermediate, self.layers
        name = name.split(".")[-1]
        table = {
            "q_proj": (h, a * d, L), "k_proj": (h, kv * d, L), "v_proj": (h, kv * d, L),
            "o_proj": (a * d, h, L), "gate_proj": (h, f, L), "up_proj": (h, f, L), "down_proj": (f, h, L),
            "qkv_proj": (h, (a + 2 * kv) * d, L), "gate_up_proj": (h, 2 * f, L),
            "embed_tokens": (self.vocab, h, 1), "lm_head": (h, self.vocab, 1),
        }
        return table.get(name)

    def lora_params(self, r: int, targets: tuple[str, ...] | list[str]) -> int:
        """N_lora = Σ_targets r·(d_in + d_out)·L; unknown module names count as h×h."""
        total = 0
        for target in targets:
            d_in, d_out, count = self.module(target) or (self.hidden, self.hidden, self.layers)
            total += r * (d_in + d_out) * count
        return total

    def full_params(self, module: str) -> int:
        """Parameters of a module trained in full (``modules_to_save``)."""
        found = self.module(module)
        if found is None:
            return self.hidden * self.layers  # norms and other small per-layer modules
        d_in, d_out, count = found
        return d_in * d_out * count


# Published architectures used when a model declares `params` but no `architecture`: the
# smallest entry whose size is ≥ the model's. Qwen3 and Llama-3.1 config.json values; the
# KV cache per token they imply (112–504 KiB) is at the high end of current GQA models,
# so the fallback errs towards "does not fit".
REFERENCE_SHAPES: tuple[tuple[float, Shape], ...] = (
    (1.0e9, Shape(28, 1024, 16, 8, 128, 3072, 151936, True, "Qwen3-0.6B")),
    (2.5e9, Shape(28, 2048, 16, 8, 128, 6144, 151936, True, "Qwen3-1.7B")),
    (5.0e9, Shape(36, 2560, 32, 8, 128, 9728, 151936, True, "Qwen3-4B")),
    (10e9, Shape(36, 4096, 32, 8, 128, 12288, 151936, False, "Qwen3-8B")),
    (20e9, Shape(40, 5120, 40, 8, 128, 17408, 151936, False, "Qwen3-14B")),
    (40e9, Shape(64, 5120, 64, 8, 128, 25600, 151936, False, "Qwen3-32B")),
    (90e9, Shape(80, 8192, 64, 8, 128, 28672, 128256, False, "Llama-3.1-70B")),
    (math.inf, Shape(126, 16384, 128, 8, 128, 53248, 128256, False, "Llama-3.1-405B")),
)


@dataclass(frozen=True)
class Sizing:
    """Parameter split of one model and where it came from."""

    params: int
    linear: int  # P_lin (quantizable)
    rest: int  # embeddings, head, norms (kept 16-bit by GPTQ/AWQ/bitsandbytes)
    shape: Shape
    exact: bool  # False: shape borrowed from REFERENCE_SHAPES


def sizing(model: Model) -> Sizing | None:
    """The model's parameter split; None when neither architecture nor params is known."""
    if model.architecture is not None:
        shape = Shape.of(model.architecture)
        return Sizing(shape.params, shape.linear_params, shape.params - shape.linear_params, shape, True)
    if model.params is None:
        return None
    shape = next(s for limit, s in REFERENCE_SHAPES if model.params <= limit)
    rest = min(shape.embedding_params + shape.norm_params, model.params // 2)
    return Sizing(model.params, model.params - rest, rest, shape, False)


# --- the estimate -------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """Bytes one workload needs, by component, against what its hardware gives."""

    label: str  # what is estimated, e.g. "qwen2.5-1.5b (ollama q4_K_M)"
    weights: int = 0
    kv_cache: int = 0
    lora: int = 0  # adapter tensors: trainable LoRA weights, GGUF adapters, vLLM LoRA slots
    optimizer: int = 0  # gradients + optimizer states
    activations: int = 0
    logits: int = 0
    runtime: int = 0  # engine buffers, CUDA context, fragmentation
    budget: int | None = None  # None: no hardware profile to check against
    budget_note: str = ""  # how the budget was derived
    details: Mapping[str, str] = field(default_factory=dict)  # component → how it was computed
    notes: tuple[str, ...] = ()  # approximations made
    known: bool = True  # False: too little is known about the model to estimate
    approximate: bool = False  # True: the model's shape was borrowed from REFERENCE_SHAPES

    COMPONENTS = ("weights", "kv_cache", "lora", "optimizer", "activations", "logits", "runtime")

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
        ``kv_cache_bytes`` is added for serving estimates, ``budget_bytes`` on request."""
        out = {
            "total_bytes": self.total,
            "weights_bytes": self.weights,
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


# --- budgets ------------------------------------------------------------------------------
def serving_budget(hw: Hardware, engine: str) -> tuple[int, str]:
    """Bytes an engine may use on ``hw`` for one copy of a model, and how that was derived."""
    if hw.kind == "gpu":
        total = hw.gpus * hw.gpu_memory_bytes
        what = f"{hw.gpus} × {_gib(hw.gpu_memory_bytes)} GPU"
        if engine == "vllm":
            return int(total * VLLM_UTILIZATION), f"{what} × gpu-memory-utilization {VLLM_UTILIZATION}"
        return total, what
    free = hw.memory_bytes - hw.os_reserve_bytes
    what = f"{_gib(hw.memory_bytes)} {'unified ' if hw.kind == 'jetson' else ''}memory − {_gib(hw.os_reserve_bytes)} OS reserve"
    if hw.kind == "jetson" and engine == "vllm":
        capped = int(hw.memory_bytes * JETSON_VLLM_UTILIZATION)
        if capped < free:
            return capped, f"{_gib(hw.memory_bytes)} unified memory × gpu-memory-utilization {JETSON_VLLM_UTILIZATION}"
    return free, what


def training_budget(hw: Hardware | None) -> tuple[int | None, str]:
    if hw is None:
        return None, "no hardware profile"
    if hw.kind == "gpu":
        return hw.gpu_memory_bytes, f"one {_gib(hw.gpu_memory_bytes)} GPU of {hw.name}"
    kind = "unified memory" if hw.kind == "jetson" else "memory"
    return hw.memory_bytes - hw.os_reserve_bytes, f"{_gib(hw.memory_bytes)} {kind} − {_gib(hw.os_reserve_bytes)} OS reserve"


# --- serving ------------------------------------------------------------------------------
def _quant(model: Model, engine: str) -> str:
    if engine in DEFAULT_GGUF:
        return model.quantization.get(engine, DEFAULT_GGUF[engine])
    return model.quantization.get("vllm", "")


def weight_bytes(model: Model, engine: str, size: Sizing) -> tuple[int, str]:
    """Weights resident while serving with ``engine``, and a description."""
    quant = _quant(model, engine)
    if engine in DEFAULT_GGUF:
        bpw = GGUF_BPW[quant.lower()]
        return int(size.params * bpw / 8), f"GGUF {quant}, {bpw:g} bits/weight × {_params(size.params)}"
    if quant:
        bits = VLLM_LINEAR_BITS[quant]
        return (int(size.linear * bits / 8) + 2 * size.rest,
                f"{quant}: {bits:g} bits × {_params(size.linear)} linear + 16-bit rest")
    nbytes = DTYPE_BYTES[model.dtype]
    name = "bfloat16" if model.dtype == "auto" else model.dtype
    return nbytes * size.params, f"{name}, {nbytes} bytes × {_params(size.params)}"


def _runtime(engine: str, size: Sizing) -> tuple[int, str]:
    shape = size.shape
    if engine in DEFAULT_GGUF:
        logits = LLAMACPP_UBATCH * shape.vocab * 4
        return LLAMACPP_COMPUTE + logits, f"compute buffers {LLAMACPP_COMPUTE // MIB} MiB + {LLAMACPP_UBATCH}-token logits"
    if not size.exact:
        return VLLM_RUNTIME_UNKNOWN, "CUDA context, CUDA graphs, activation peak (no architecture: 1.5 GiB)"
    peak = VLLM_PREFILL_TOKENS * (6 * shape.intermediate + 12 * shape.hidden) + VLLM_MAX_NUM_SEQS * shape.vocab * 4
    return VLLM_CONTEXT + peak, f"CUDA context + graphs 1 GiB, profiled peak {_mib(peak)}"


def _max_lora_rank(rank: int) -> int:
    return next((r for r in VLLM_MAX_LORA_RANKS if r >= rank), rank)


def estimate_model(plan: Plan, dep: Deployment, model_name: str) -> Estimate:
    """One served model of ``dep`` on its own: weights + KV cache + runtime + adapters."""
    model = plan.models[model_name]
    engine = dep.engine
    budget, budget_note = serving_budget(dep.hardware, engine)
    quant = _quant(model, engine)
    label = f"{model_name} ({engine}{' ' + quant if quant else ''})"
    size = sizing(model)
    if size is None:
        return Estimate.unknown(label, f"{model_name}: memory unknown (declare params: or architecture:)",
                                budget, budget_note)
    notes: list[str] = []
    if not size.exact:
        notes.append(f"{model_name}: no architecture, KV cache and buffers assume {size.shape.source}'s shape")
    weights, weights_how = weight_bytes(model, engine, size)
    context = dep.context_of(model_name)
    adapters = [plan.adapters[a] for a in dep.adapters_of(model_name)]
    released = [a for a in adapters if a.release]
    # processes holding a KV cache: llama.cpp runs one server per base model and per released
    # adapter alias (weights are mmapped, shared through the page cache); Ollama and vLLM one
    processes = 1
    if engine == "llamacpp":
        processes = 1 + sum(1 for u in dep.upstreams.values() if u.model == model_name and u.adapter and u.released)
    tokens = context * dep.slots * processes
    kv = size.shape.kv_bytes_per_token * tokens
    kv_how = f"{size.shape.kv_bytes_per_token // 1024} KiB/token × {context} context × {dep.slots} slot(s)"
    if processes > 1:
        kv_how += f" × {processes} processes"
    runtime, runtime_how = _runtime(engine, size)
    runtime *= processes
    lora, lora_how = 0, ""
    if engine == "vllm" and adapters:
        rank = _max_lora_rank(max(a.rank for a in adapters))
        per_rank = size.shape.lora_params(1, LINEAR_MODULES)
        lora = len(adapters) * rank * per_rank * DTYPE_BYTES[model.dtype]
        lora_how = f"max-loras {len(adapters)} × max-lora-rank {rank} over all 7 projections"
    elif released:
        # GGUF LoRA adapters (f32); an Ollama derived model loads one, llama.cpp each of its own
        sizes = [4 * size.shape.lora_params(a.rank, a.lora["target_modules"]) for a in released]
        lora = sum(sizes) if engine == "llamacpp" else max(sizes)
        lora_how = f"{len(released)} GGUF adapter(s), f32"
    details = {"weights": weights_how, "kv_cache": kv_how, "runtime": runtime_how}
    if lora_how:
        details["lora"] = lora_how
    return Estimate(label=label, weights=weights, kv_cache=kv, lora=lora, runtime=runtime,
                    budget=budget, budget_note=budget_note, details=details, notes=tuple(notes),
                    approximate=not size.exact)


def estimate_serving(plan: Plan, dep: Deployment) -> dict[str, Estimate]:
    """Per served model of ``dep``: what one copy of it needs, against the hardware budget."""
    return {name: estimate_model(plan, dep, name) for name in dep.models}


def shares_hardware(dep: Deployment) -> bool:
    """Models of a deployment share one machine, except on helm (a Deployment per model,
    each pod with its own GPUs)."""
    return dep.target != "helm"


def estimate_deployment(plan: Plan, dep: Deployment) -> tuple[dict[str, Estimate], Estimate]:
    """Per-model estimates and their sum. With shared hardware (compose, local: Ollama keeps
    OLLAMA_MAX_LOADED_MODELS = number of models loaded at once) the sum is checked against one
    budget; on helm each model has its own GPUs, so the sum's budget is one per model."""
    per_model = estimate_serving(plan, dep)
    budget, note = serving_budget(dep.hardware, dep.engine)
    label = f"deployment {dep.name} on {dep.hardware.name}"
    if not shares_hardware(dep) and len(per_model) > 1:
        budget, note = budget * len(per_model), f"{len(per_model)} × ({note}), one per model"
    return per_model, total_of(label, list(per_model.values()), budget, note)


def deployment_fits(plan: Plan, dep: Deployment) -> bool:
    per_model, total = estimate_deployment(plan, dep)
    if shares_hardware(dep):
        return total.fits
    return all(e.fits for e in per_model.values())


# --- training -----------------------------------------------------------------------------
def estimate_training(plan: Plan, adapter: Adapter, recipe: Recipe = VILMS_TRAINER) -> Estimate:
    """Peak memory of training ``adapter`` on its hardware profile (reference §8)."""
    model = plan.models[adapter.base]
    hw = plan.hardware.get(adapter.hardware) if adapter.hardware else None
    budget, budget_note = training_budget(hw)
    label = f"training {adapter.name} ({adapter.method}, {adapter.base})"
    size = sizing(model)
    if size is None:
        return Estimate.unknown(label, f"{adapter.base}: memory unknown (declare params: or architecture:)",
                                budget, budget_note)
    shape = size.shape
    cuda = hw is None or hw.cuda
    fp32 = not cuda  # the trainer uses fp32 where there is no CUDA bf16
    t = adapter.training
    b, s = int(t["batch_size"]), int(t["seq_len"])
    L, h, V = shape.layers, shape.hidden, shape.vocab
    notes: list[str] = []
    if not size.exact:
        notes.append(f"{adapter.base}: no architecture, activations and LoRA shapes assume {shape.source}'s shape")

    if adapter.method == "qlora":
        bits = NF4_DOUBLE_QUANT_BITS if recipe.double_quant else NF4_BITS
        weights = int(size.linear * bits / 8) + recipe.qlora_rest_bytes * size.rest
        weights_how = (f"NF4{' + double quant' if recipe.double_quant else ''} {bits:g} bits × {_params(size.linear)}"
                       f" + {recipe.qlora_rest_bytes} bytes × {_params(size.rest)} embeddings/norms")
    else:
        nbytes = 4 if fp32 else 2
        weights = nbytes * size.params
        weights_how = f"{'fp32' if fp32 else 'bf16'}, {nbytes} bytes × {_params(size.params)}"

    lora = adapter.lora
    n_lora = shape.lora_params(int(lora["r"]), lora["target_modules"])
    n_full = sum(shape.full_params(m) for m in lora.get("modules_to_save", ()))
    trainable = n_lora + n_full
    lora_bytes = recipe.adapter_bytes * trainable
    optimizer = recipe.optimizer_bytes * trainable
    act_scale = 2 if fp32 else 1
    if t.get("gradient_checkpointing", True):
        activations = (L * b * s * h * ACT_SAVED_BYTES + b * s * h * ACT_LAYER_BYTES) * act_scale
        act_how = "checkpointing: L·b·s·h·2 + b·s·h·34"
    else:
        activations = L * b * s * h * ACT_LAYER_BYTES * act_scale
        act_how = "no checkpointing: L·b·s·h·34"
    logits = 0 if recipe.logit_bytes is None else b * s * V * recipe.logit_bytes
    tensors = weights + lora_bytes + optimizer + activations + logits
    runtime = int(tensors * (recipe.fragmentation - 1)) + (recipe.cuda_context if cuda else recipe.cpu_runtime)
    details = {
        "weights": weights_how,
        "lora": f"{_params(trainable)} trainable (r={lora['r']}, {len(lora['target_modules'])} modules) × {recipe.adapter_bytes} bytes",
        "optimizer": f"AdamW, {recipe.optimizer_bytes} bytes × trainable",
        "activations": f"{act_how}, b={b}, s={s}",
        "logits": "chunked loss" if recipe.logit_bytes is None else f"b·s·V·{recipe.logit_bytes}",
        "runtime": f"×{recipe.fragmentation:g} fragmentation"
                   + (f" + {_gib(recipe.cuda_context)} CUDA context" if cuda else f" + {_mib(recipe.cpu_runtime)} trainer process"),
    }
    return Estimate(label=label, weights=weights, lora=lora_bytes, optimizer=optimizer, activations=activations,
                    logits=logits, runtime=runtime, budget=budget, budget_note=budget_note, details=details,
                    notes=tuple(notes), approximate=not size.exact)


# --- whole plan ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NotFit:
    """One workload that does not fit: where in vilms.yaml, what to say, and the table."""

    path: tuple[str, ...]
    message: str
    table: str
    hint: str


def check_plan(plan: Plan, *, fail_on_approximate: bool = True) -> list[NotFit]:
    """Every deployment and training run of ``plan`` that does not fit its hardware.

    ``fail_on_approximate=False`` lets estimates built on a borrowed shape (a model with
    ``params`` but no ``architecture``) pass even when they exceed the budget."""
    out: list[NotFit] = []
    for name, dep in plan.deployments.items():
        per_model, total = estimate_deployment(plan, dep)
        if shares_hardware(dep):
            failing = [total] if not total.fits else []
        else:
            failing = [e for e in per_model.values() if not e.fits]
        failing = [e for e in failing if fail_on_approximate or not e.approximate]
        for est in failing:
            out.append(NotFit(
                path=("deployments", name, "hardware"),
                message=(f"deployment {name!r} needs {_gib(est.total)} but hardware {dep.hardware.name!r} "
                         f"gives {_gib(est.budget or 0)} ({est.budget_note})"),
                table=format_table({**per_model, "total": total} if len(per_model) > 1 else per_model),
                hint=_approximate_hint(plan, dep.models if est.approximate else ()) + _serving_hint(plan, dep),
            ))
    for name, adapter in plan.adapters.items():
        est = estimate_training(plan, adapter)
        if not est.fits and (fail_on_approximate or not est.approximate):
            out.append(NotFit(
                path=("adapters", name, "hardware"),
                message=(f"training adapter {name!r} needs {_gib(est.total)} but hardware {adapter.hardware!r} "
                         f"gives {_gib(est.budget or 0)} ({est.budget_note})"),
                table=format_table(est),
                hint=_approximate_hint(plan, (adapter.base,) if est.approximate else ()) + ("lower training.batch_size or training.seq_len, keep gradient_checkpointing on"
                      + (", or use method: qlora" if adapter.method == "lora" and plan.hardware[adapter.hardware or ""].cuda else "")
                      + ", or train on a larger hardware profile"),
            ))
    return out


def _approximate_hint(plan: Plan, model_names: tuple[str, ...]) -> str:
    guessed = sorted(m for m in model_names if plan.models[m].architecture is None)
    if not guessed:
        return ""
    return (f"declare architecture: (from config.json) for {', '.join(guessed)}: the estimate borrows a "
            "reference model's shape; otherwise ")


def _serving_hint(plan: Plan, dep: Deployment) -> str:
    parts = ["serve fewer or smaller models", "lower the deployment's context"]
    if dep.slots > 1:
        parts.append("lower parallel")
    if dep.engine == "vllm":
        parts.append("use a quantized checkpoint (quantization.vllm: awq|gptq|fp8)")
    elif any(GGUF_BPW[_quant(plan.models[m], dep.engine).lower()] > GGUF_BPW["q4_k_m"] for m in dep.models):
        parts.append("pick a smaller quantization (q4_K_M)")
    return ", ".join(parts) + ", or use a larger hardware profile"


# --- the table ----------------------------------------------------------------------------
ROW_NAMES = {
    "weights": "weights", "kv_cache": "KV cache", "lora": "LoRA / adapters", "optimizer": "grads + optimizer",
    "activations": "activations", "logits": "logits", "runtime": "runtime overhead",
}


def format_table(estimates: Estimate | Mapping[str, Estimate]) -> str:
    """An aligned table: component, GiB, how it was computed; then total, budget, verdict."""
    if isinstance(estimates, Estimate):
        estimates = {estimates.label: estimates}
    rows: list[tuple[str, str, str]] = []
    for est in estimates.values():
        rows.append((est.label, "", ""))
        if not est.known:
            rows.append(("  estimate", "unknown", "; ".join(est.notes)))
            if est.budget is not None:
                rows.append(("  budget", _num(est.budget), est.budget_note))
            continue
        for comp in Estimate.COMPONENTS:
            value = getattr(est, comp)
            if value:
                rows.append((f"  {ROW_NAMES[comp]}", _num(value), est.details.get(comp, "")))
        rows.append(("  total", _num(est.total), ""))
        if est.budget is not None:
            rows.append(("  budget", _num(est.budget), est.budget_note))
        rows.append(("  verdict", "", _verdict(est)))
    notes = sorted({n for e in estimates.values() for n in e.notes if e.known})
    width = max(len(r[0]) for r in rows)
    num_width = max(max(len(r[1]) for r in rows), len("GiB"))
    lines = [f"{'component':<{width}}  {'GiB':>{num_width}}  how"]
    lines.append("-" * len(lines[0].rstrip()))
    for name, num, how in rows:
        lines.append(f"{name:<{width}}  {num:>{num_width}}  {how}".rstrip())
    lines.extend(f"note: {n}" for n in notes)
    return "\n".join(lines)


def _verdict(est: Estimate) -> str:
    if est.budget is None:
        return "no hardware profile to check"
    free = est.budget - est.total
    if free >= 0:
        return f"fits ({free / GIB:.2f} GiB free, {100 * est.total / max(est.budget, 1):.0f}% used)"
    return f"DOES NOT FIT ({-free / GIB:.2f} GiB over)"


def _num(n: int) -> str:
    return f"{n / GIB:.2f}"


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n % GIB else f"{n // GIB} GiB"


def _mib(n: int) -> str:
    return f"{n / MIB:.0f} MiB"


def _params(n: int) -> str:
    return f"{n / 1e9:.2f} B params" if n >= 1e9 else f"{n / 1e6:.1f} M params"


# --- wiring helpers -----------------------------------------------------------------------
def training_estimates(plan: Plan) -> dict[str, dict[str, int]]:
    """``memory_estimate`` for every adapter's training config (known estimates only)."""
    out = {}
    for name, adapter in plan.adapters.items():
        est = estimate_training(plan, adapter)
        if est.known:
            out[name] = est.as_dict()
    return out


def explain_lines(plan: Plan, dep: Deployment) -> list[str]:
    """The memory section of ``vilms explain DEPLOYMENT``."""
    per_model, total = estimate_deployment(plan, dep)
    shown: dict[str, Estimate] = dict(per_model)
    if len(per_model) > 1:
        shown["total"] = total
    lines = ["memory:"]
    lines.extend("  " + line for line in format_table(shown).splitlines())
    trained = [a for a in plan.adapters.values() if a.base in dep.models]
    for adapter in sorted(trained, key=lambda a: a.name):
        lines.append(f"training {adapter.name}:")
        lines.extend("  " + line for line in format_table(estimate_training(plan, adapter)).splitlines())
    return lines


__all__ = [
    "Estimate", "Recipe", "Shape", "Sizing", "NotFit", "VILMS_TRAINER", "GGUF_BPW", "REFERENCE_SHAPES",
    "estimate_serving", "estimate_model", "estimate_deployment", "deployment_fits", "estimate_training",
    "serving_budget", "training_budget", "sizing", "weight_bytes", "check_plan", "format_table",
    "training_estimates", "explain_lines", "total_of",
]
