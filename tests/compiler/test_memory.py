"""The memory planner against published measurements (reference/training.md §2–§4, §6, §8;
serving.md §6), within 20 %, plus fit verdicts and the table.

Architectures are the published config.json values. Where a publication leaves its setup
open, the assumption is written next to the figure. "GiB" figures are compared in GiB,
"GB" figures in 10⁹ bytes unless said otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vilms.compiler import memory
from vilms.compiler.memory import GIB, Estimate, Recipe, estimate_serving, estimate_training, format_table
from vilms.compiler.plan import Adapter, Deployment, Gateway, Hardware, Model, Plan, Source, Upstream, frozen

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 0.20

# --- published architectures (config.json) --------------------------------------------------
LLAMA_31_8B = {"layers": 32, "hidden_size": 4096, "heads": 32, "kv_heads": 8, "head_dim": 128,
               "intermediate_size": 14336, "vocab_size": 128256, "tie_word_embeddings": False}
LLAMA_3_8B = LLAMA_31_8B  # same shape; Llama 3.1 only changed RoPE scaling and context
LLAMA_2_7B = {"layers": 32, "hidden_size": 4096, "heads": 32, "kv_heads": 32, "head_dim": 128,
              "intermediate_size": 11008, "vocab_size": 32000, "tie_word_embeddings": False}
QWEN25_7B = {"layers": 28, "hidden_size": 3584, "heads": 28, "kv_heads": 4, "head_dim": 128,
             "intermediate_size": 18944, "vocab_size": 152064, "tie_word_embeddings": False}
QWEN25_1_5B = {"layers": 28, "hidden_size": 1536, "heads": 12, "kv_heads": 2, "head_dim": 128,
               "intermediate_size": 8960, "vocab_size": 151936, "tie_word_embeddings": True}
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# torchtune's single-device LoRA recipe: everything bf16 (adapters, grads, AdamW states),
# embeddings and head bf16, chunked cross-entropy in the Llama 3.1 configs
# (LinearCrossEntropyLoss). Not modelled: torchtune quantizes only the linears that carry
# LoRA, so k_proj in its 8B config stays bf16 (+0.19 GiB, which would raise the estimate).
TORCHTUNE = Recipe(qlora_rest_bytes=2, adapter_bytes=2, optimizer_bytes=6, logit_bytes=None)
# torchtune's old Llama2 LoRA config used torch.nn.CrossEntropyLoss on the model's fp32 output
TORCHTUNE_FULL_CE = Recipe(qlora_rest_bytes=2, adapter_bytes=2, optimizer_bytes=6, logit_bytes=16)


# --- building plans directly -------------------------------------------------------------------
def hardware(name: str = "box", kind: str = "gpu", memory: int = 64 * GIB, gpus: int = 1,
             gpu_memory: int = 24 * GIB, os_reserve: int | None = None, nodes: int = 1) -> Hardware:
    return Hardware(
        name=name, kind=kind, memory_bytes=memory, cpus=8, arch="arm64" if kind == "jetson" else "amd64",
        jetpack="6.2" if kind == "jetson" else None,
        os_reserve_bytes=os_reserve if os_reserve is not None else (2 * GIB if kind == "gpu" else GIB),
        gpus=gpus if kind == "gpu" else (1 if kind == "jetson" else 0),
        gpu_memory_bytes=gpu_memory if kind == "gpu" else 0, gpu_type=None, nodes=nodes,
    )


ORIN_NANO = hardware("orin-nano", "jetson", memory=8 * GIB)


def model(name: str = "m", arch: dict[str, Any] | None = None, params: int | None = None,
          quant: dict[str, str] | None = None, context: int = 8192, dtype: str = "auto") -> Model:
    return Model(
        name=name, source=Source("hf", f"org/{name}", None), family="llama", params=params, context=context,
        chat_template="chatml", quantization=frozen(quant or {}), dtype=dtype,
        architecture=frozen(arch) if arch is not None else None, task="chat", token_env=None,
        weights=frozen({"source": f"hf:org/{name}", "gguf": f"hf:org/{name}-GGUF"}),
    )


def adapter(base: str = "m", method: str = "qlora", r: int = 8, targets: list[str] | None = None,
            batch_size: int = 2, seq_len: int = 2048, checkpointing: bool = True,
            hw: str | None = "box", release: str | None = None, name: str = "ad", strategy: str = "auto") -> Adapter:
    return Adapter(
        name=name, base=base, dataset="d", method=method,
        lora=frozen({"r": r, "alpha": 2 * r, "dropout": 0.0, "target_modules": targets or ALL_LINEAR,
                     "use_rslora": False, "use_dora": False, "modules_to_save": []}),
        training=frozen({"batch_size": batch_size, "seq_len": seq_len, "gradient_checkpointing": checkpointing,
                         "strategy": strategy}),
        hardware=hw, gate=frozen({}), export=frozen({}), mlflow=None, release=release,
    )


def deployment(hw: Hardware, engine: str, models: list[Model], *, target: str = "compose",
               context: int | None = None, parallel: int | None = None,
               adapters: list[Adapter] = ()) -> Deployment:
    upstreams = {m.name: Upstream(m.name, m.name, None, True, context or m.context) for m in models}
    for a in adapters:
        upstreams[f"{a.name}-alias"] = Upstream(a.name, a.base, a.name, a.release is not None,
                                                context or next(m.context for m in models if m.name == a.base))
    return Deployment(
        name="dep", hardware=hw, target=target, engine=engine, aliases=tuple(sorted(upstreams)),
        models=tuple(sorted(m.name for m in models)), upstreams=frozen(upstreams),
        contexts=frozen({m.name: context or m.context for m in models}),
        model_adapters=frozen({m.name: tuple(sorted(a.name for a in adapters if a.base == m.name)) for m in models}),
        replicas=1, parallel=parallel, gateway_port=8080, engine_port=8101, expose=False, ingress=None, autoscale=frozen({}),
        serving=frozen({}), update=frozen({"max_surge": 1, "max_unavailable": 0}), monitoring=None,
        threads=4, gpu_layers=0, kube_context=None, namespace=None,
    )


def plan(models: list[Model], hw: list[Hardware] = (), adapters: list[Adapter] = (),
         deployments: list[Deployment] = ()) -> Plan:
    return Plan(
        project="p", source_name="vilms.yaml", input_sha256="0" * 64,
        hardware=frozen({h.name: h for h in hw}), models=frozen({m.name: m for m in models}), datasets=frozen({}),
        adapters=frozen({a.name: a for a in adapters}),
        aliases=frozen({}), deployments=frozen({d.name: d for d in deployments}),
        gateway=Gateway(None, 2, 5.0, 600.0, 8 << 20, 256, 30.0, "round_robin", "reject", 8080,
                        120.0, 900.0, 30.0, 16 << 20, 5, 5.0, None, {}),
        artifact_store=None,
        telemetry=None,
        gitops=None,
    )


def within(estimate: float, published: float, tolerance: float = TOLERANCE) -> None:
    error = (estimate - published) / published
    assert abs(error) <= tolerance, f"estimate {estimate:.3f} vs published {published:.3f}: {error:+.1%}"


def train(arch: dict, recipe: Recipe = memory.VILMS_TRAINER, **kw: Any) -> Estimate:
    m = model("m", arch)
    a = adapter(**kw)
    return estimate_training(plan([m], [hardware()], [a]), a, recipe)


def serve(m: Model, engine: str, hw: Hardware | None = None, **kw: Any) -> Estimate:
    hw = hw or hardware()
    dep = deployment(hw, engine, [m], **kw)
    return estimate_serving(plan([m], [hw], deployments=[dep]), dep)[m.name]


# --- shapes -------------------------------------------------------------------------------
def test_parameter_counts_match_published_sizes() -> None:
    # model cards: Llama-3.1-8B 8.03 B, Llama-2-7B 6.74 B, Qwen2.5-7B 7.61 B (q/k/v biases,
    # 0.2 M, are not counted), Qwen2.5-1.5B 1.54 B
    within(memory.Shape.of(LLAMA_31_8B).params / 1e9, 8.03, 0.01)
    within(memory.Shape.of(LLAMA_2_7B).params / 1e9, 6.74, 0.01)
    within(memory.Shape.of(QWEN25_7B).params / 1e9, 7.62, 0.01)
    within(memory.Shape.of(QWEN25_1_5B).params / 1e9, 1.54, 0.01)


def test_lora_parameter_count_matches_reference_example() -> None:
    # training.md §8: Llama-3-8B, r=16, all 7 linear: N_lora = 41.9 M
    assert memory.Shape.of(LLAMA_3_8B).lora_params(16, ALL_LINEAR) == 41_943_040


# --- inference: weights -----------------------------------------------------------------
@pytest.mark.parametrize(("quant", "published_gib"), [
    # llama.cpp tools/quantize QUANT_OPTIONS, Llama-3-8B (training.md §6)
    ("q4_0", 4.34), ("q4_K_S", 4.37), ("q4_K_M", 4.58), ("q5_K_M", 5.33), ("q6_K", 6.14), ("q8_0", 7.96),
])
def test_gguf_weights_match_llama_cpp_sizes(quant: str, published_gib: float) -> None:
    est = serve(model("llama3-8b", LLAMA_3_8B, quant={"ollama": quant}), "ollama")
    within(est.weights / GIB, published_gib, 0.05)  # calibrated table: far inside 20 %


def test_f16_weights_match_mistral_7b() -> None:
    # quantize.cpp lists F16 as 14.00 G for Mistral-7B (7.24 B params): 13.49 GiB estimated
    # (-3.6 %); read as GB instead, 14.48 GB (+3.4 %)
    mistral = {"layers": 32, "hidden_size": 4096, "heads": 32, "kv_heads": 8, "head_dim": 128,
               "intermediate_size": 14336, "vocab_size": 32000, "tie_word_embeddings": False}
    est = serve(model("mistral", mistral, quant={"llamacpp": "f16"}), "llamacpp", hardware(kind="cpu"))
    within(est.weights / GIB, 14.00, 0.05)


def test_vllm_weights_by_dtype_and_quantization() -> None:
    base = serve(model("l", LLAMA_31_8B), "vllm")
    assert base.weights == 2 * memory.Shape.of(LLAMA_31_8B).params
    shape = memory.Shape.of(LLAMA_31_8B)
    rest = shape.params - shape.linear_params  # embeddings, head, norms stay 16-bit
    awq = serve(model("l", LLAMA_31_8B, quant={"vllm": "awq"}), "vllm")
    assert awq.weights == int(shape.linear_params * 4.25 / 8) + 2 * rest
    fp8 = serve(model("l", LLAMA_31_8B, quant={"vllm": "fp8"}), "vllm")
    assert fp8.weights == shape.linear_params + 2 * rest
    f32 = serve(model("l", LLAMA_31_8B, dtype="float32"), "vllm")
    assert f32.weights == 2 * base.weights


# --- inference: KV cache ----------------------------------------------------------------
def test_kv_cache_per_token_matches_reference() -> None:
    # training.md §8: Llama-3.1-8B (32 layers, 8 kv heads, 128) = 128 KiB/token; Qwen2.5-7B = 56 KiB
    assert memory.Shape.of(LLAMA_31_8B).kv_bytes_per_token == 128 * 1024
    assert memory.Shape.of(QWEN25_7B).kv_bytes_per_token == 56 * 1024


def test_kv_cache_8k_context_is_one_gib() -> None:
    est = serve(model("l", LLAMA_31_8B, context=8192), "vllm", parallel=1)
    assert est.kv_cache == GIB


def test_kv_cache_scales_with_parallel_slots() -> None:
    one = serve(model("l", LLAMA_31_8B), "ollama", ORIN_NANO, parallel=1)
    four = serve(model("l", LLAMA_31_8B), "ollama", ORIN_NANO, parallel=4)
    assert four.kv_cache == 4 * one.kv_cache


# --- inference: whole-process totals --------------------------------------------------------
def test_jetson_containers_ollama_llama2_7b_total() -> None:
    # jetson-containers packages/llm/ollama/docs.md: Llama-2-7B Q4_K_S uses 5,268 MB.
    # Assumptions: Ollama's default num_ctx at the time (2048), one slot, f16 KV cache, and
    # MB read as 10⁶ bytes (as MiB the estimate is 4 % under instead of 0.3 % over).
    est = serve(model("llama2-7b", LLAMA_2_7B, quant={"ollama": "q4_K_S"}, context=2048), "ollama",
                ORIN_NANO, parallel=1)
    within(est.total / 1e6, 5268)
    within(est.total / 2**20, 5268)


# --- training: published peaks -------------------------------------------------------------
def test_torchtune_llama31_8b_qlora() -> None:
    # torchtune README: Llama 3.1 8B QLoRA, 1×4090, bs 2, packed seq 2048, compile: 7.4 GiB.
    # Config 8B_qlora_single_device: LoRA r=8 on q, v, output_proj + MLP (not k), activation
    # checkpointing, chunked cross-entropy (no full logits), bf16 adapters and AdamW states.
    est = train(LLAMA_31_8B, TORCHTUNE, r=8, targets=["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                batch_size=2, seq_len=2048)
    within(est.total / GIB, 7.4)


def test_torchtune_llama2_7b_lora_tutorial() -> None:
    # torchtune QLoRA tutorial: LoRA (llama2/7B_lora_single_device: r=8 on q, v; bs 2; activation
    # checkpointing; torch CrossEntropyLoss) peak reserved 13.98 GiB at init, 15.57 GiB training.
    # torchtune logs GiB (bytes / 1024³) labelled "GB". Alpaca is unpacked and untruncated: we
    # assume the peak batch is 1024 tokens long (512 → -3 %, 2048 → +9 %).
    est = train(LLAMA_2_7B, TORCHTUNE_FULL_CE, method="lora", r=8, targets=["q_proj", "v_proj"],
                batch_size=2, seq_len=1024)
    within(est.total / GIB, 15.57)
    within((est.weights + est.lora) / GIB, 13.98)  # model init: weights + adapters


def test_torchtune_llama2_7b_qlora_tutorial_is_an_upper_bound() -> None:
    # Same tutorial, QLoRA (7B_qlora_single_device: r=8 on q, k, v, o + MLP, bs 2): 9.13 GiB peak reserved at
    # model init, 9.29 GiB in training. The init figure is taken before any activation exists
    # and is ~2.4× the NF4 model: it records torchtune's load transient (the bf16 state dict is
    # on the GPU while it is converted to NF4), which the caching allocator keeps reserved and
    # training then reuses. Steady-state tensors cannot reproduce it, so the published figure
    # is checked as an upper bound, and the QLoRA saving against LoRA must show.
    qlora = train(LLAMA_2_7B, TORCHTUNE, r=8, targets=ALL_LINEAR, batch_size=2, seq_len=1024)
    lora = train(LLAMA_2_7B, TORCHTUNE_FULL_CE, method="lora", r=8, targets=["q_proj", "v_proj"],
                 batch_size=2, seq_len=1024)
    assert qlora.total / GIB <= 9.29
    assert qlora.weights < 0.3 * lora.weights


def test_hf_baseline_max_context_from_unsloth_benchmark() -> None:
    # Unsloth's (removed) README benchmark, Llama 3.1 8B QLoRA r=32 all linear, bs 1: the
    # "Hugging Face + FA2" baseline — the same stack as the ViLMS trainer — reaches
    # 932 tokens on 12 GB, 2,551 on 16 GB, 5,789 on 24 GB, 28,454 on 80 GB before OOM.
    # The estimate at that context should be the card's memory (cards' "GB" are GiB).
    for tokens, card in ((932, 12), (2551, 16), (5789, 24), (28454, 80)):
        est = train(LLAMA_31_8B, r=32, targets=ALL_LINEAR, batch_size=1, seq_len=tokens)
        within(est.total / GIB, card)


def test_reference_sanity_check_llama31_8b_qlora() -> None:
    # training.md §8: NF4+DQ 3.6 GB + embed/head 2.1 GB (16-bit) + adapters + activations 1.7 GB
    est = train(LLAMA_31_8B, TORCHTUNE, r=8, targets=ALL_LINEAR, batch_size=2, seq_len=2048)
    shape = memory.Shape.of(LLAMA_31_8B)
    within(shape.linear_params * 4.127 / 8 / 1e9, 3.6, 0.03)
    within(2 * shape.embedding_params / 1e9, 2.1, 0.03)
    within(est.activations / 1e9, 1.7, 0.05)


def test_unsloth_minimum_is_a_lower_bound() -> None:
    # Unsloth requirements (absolute minimum with Unsloth's kernels): Llama 3.1 8B QLoRA 6 GB,
    # 16-bit LoRA 22 GB. The ViLMS trainer (plain PEFT + HF loss) cannot need less.
    # Setup assumed: bs 1, seq 2048, r=16 on all linear layers.
    qlora = train(LLAMA_31_8B, r=16, targets=ALL_LINEAR, batch_size=1, seq_len=2048)
    lora = train(LLAMA_31_8B, method="lora", r=16, targets=ALL_LINEAR, batch_size=1, seq_len=2048)
    assert qlora.total >= 6e9
    assert lora.total >= 22e9
    within(lora.total / 1e9, 22)  # 16-bit LoRA is weight-bound: close to the minimum


@pytest.mark.parametrize(("method", "published_gb"), [("qlora", 6), ("lora", 16)])
def test_llama_factory_7b_table(method: str, published_gb: float) -> None:
    # LLaMA-Factory README "Hardware Requirement (estimated)": 7B QLoRA 4-bit 6 GB, LoRA 16 GB.
    # Setup assumed: Llama-2-7B, their defaults (r=8, lora_target all), bs 1, seq 1024.
    est = train(LLAMA_2_7B, method=method, r=8, targets=ALL_LINEAR, batch_size=1, seq_len=1024)
    within(est.total / 1e9, published_gb)


def test_gradient_checkpointing_and_chunked_loss_reduce_memory() -> None:
    on = train(LLAMA_31_8B, batch_size=2, seq_len=2048)
    off = train(LLAMA_31_8B, batch_size=2, seq_len=2048, checkpointing=False)
    chunked = train(LLAMA_31_8B, Recipe(logit_bytes=None), batch_size=2, seq_len=2048)
    assert off.activations > 10 * on.activations
    assert chunked.logits == 0 < on.logits == 2 * 2048 * 128256 * 16


def test_training_as_dict_matches_the_trainer_contract() -> None:
    est = train(LLAMA_31_8B)
    data = est.as_dict()
    assert set(data) == {"total_bytes", "weights_bytes", "adapter_bytes", "optimizer_bytes",
                         "activations_bytes", "overhead_bytes"}
    assert all(isinstance(v, int) for v in data.values())
    assert data["total_bytes"] == sum(v for k, v in data.items() if k != "total_bytes")
    assert est.as_dict(with_budget=True)["budget_bytes"] == 24 * GIB


# --- fits ---------------------------------------------------------------------------------
def test_orin_nano_budget_is_memory_minus_os_reserve() -> None:
    est = serve(model("q", QWEN25_1_5B, quant={"ollama": "q4_K_M"}), "ollama", ORIN_NANO)
    assert est.budget == 7 * GIB
    vllm = serve(model("q", QWEN25_1_5B), "vllm", ORIN_NANO)
    assert vllm.budget == int(8 * GIB * 0.6)


def test_7b_f16_does_not_fit_orin_nano() -> None:
    est = serve(model("q7", QWEN25_7B, quant={"ollama": "f16"}), "ollama", ORIN_NANO)
    assert not est.fits
    assert est.weights > 14e9


def test_1_5b_q4_fits_orin_nano() -> None:
    est = serve(model("q", QWEN25_1_5B, quant={"ollama": "q4_K_M"}), "ollama", ORIN_NANO)
    assert est.fits
    assert est.total < 2 * GIB


def test_models_of_a_deployment_share_the_budget() -> None:
    a = model("a", QWEN25_7B, quant={"ollama": "q4_K_M"}, context=4096)
    b = model("b", LLAMA_31_8B, quant={"ollama": "q4_K_M"}, context=4096)
    dep = deployment(ORIN_NANO, "ollama", [a, b])
    p = plan([a, b], [ORIN_NANO], deployments=[dep])
    per_model, total = memory.estimate_deployment(p, dep)
    assert all(e.fits for e in per_model.values())  # each alone fits 7 GiB
    assert total.total == sum(e.total for e in per_model.values())
    assert not total.fits and not memory.deployment_fits(p, dep)  # both loaded at once do not
    problems = memory.check_plan(p)
    assert [n.path for n in problems] == [("deployments", "dep", "hardware")]
    assert "DOES NOT FIT" in problems[0].table


def test_helm_models_get_their_own_gpus() -> None:
    gpu = hardware(gpu_memory=24 * GIB)
    a, b = model("a", LLAMA_31_8B, context=8192), model("b", QWEN25_7B, context=8192)
    dep = deployment(gpu, "vllm", [a, b], target="helm")
    p = plan([a, b], [gpu], deployments=[dep])
    assert memory.deployment_fits(p, dep)
    assert memory.check_plan(p) == []


def test_vllm_lora_slots_counted_when_adapters_are_served() -> None:
    gpu = hardware()
    m = model("m", LLAMA_31_8B)
    ad = adapter(base="m", method="lora", r=32, name="ad")
    without = serve(m, "vllm", gpu)
    dep = deployment(gpu, "vllm", [m], adapters=[ad])
    with_lora = estimate_serving(plan([m], [gpu], [ad], [dep]), dep)["m"]
    # max-loras 1 × max-lora-rank 32 × Σ(d_in + d_out)·L over 7 projections × 2 bytes
    assert with_lora.lora == 32 * memory.Shape.of(LLAMA_31_8B).lora_params(1, ALL_LINEAR) * 2
    assert with_lora.total > without.total


def test_llamacpp_serves_released_adapters_from_one_kv_cache() -> None:
    cpu = hardware(kind="cpu")
    m = model("m", LLAMA_31_8B, context=4096)
    released = [adapter(base="m", method="lora", r=8, name=n, release=f"{n}-run", targets=["q_proj", "v_proj"])
                for n in ("a", "b")]
    alone = serve(m, "llamacpp", cpu)
    dep = deployment(cpu, "llamacpp", [m], adapters=released)
    both = estimate_serving(plan([m], [cpu], released, [dep]), dep)["m"]
    # one server per base model: its KV cache and buffers once, whatever the adapters; each adapter f32
    assert (both.kv_cache, both.runtime) == (alone.kv_cache, alone.runtime)
    assert both.lora == 2 * 4 * memory.Shape.of(LLAMA_31_8B).lora_params(8, ["q_proj", "v_proj"])
    assert "× 2 processes" not in both.details["kv_cache"] and "2 GGUF adapter(s)" in both.details["lora"]


def test_training_on_orin_nano() -> None:
    # training.md §7: Orin Nano 8 GB fits ≤4B QLoRA at short sequences; an 8B LoRA does not
    nano = hardware("nano", "jetson", memory=8 * GIB)
    small = model("q", QWEN25_1_5B)
    big = model("l", LLAMA_31_8B)
    ok = adapter(base="q", method="qlora", r=8, batch_size=1, seq_len=512, hw="nano", name="ok")
    too_big = adapter(base="l", method="lora", r=8, batch_size=1, seq_len=512, hw="nano", name="big")
    p = plan([small, big], [nano], [ok, too_big])
    assert estimate_training(p, ok).fits
    assert not estimate_training(p, too_big).fits
    assert [n.path for n in memory.check_plan(p)] == [("adapters", "big", "hardware")]


# --- unknowns and fallbacks ----------------------------------------------------------------
def test_params_only_uses_a_reference_shape() -> None:
    est = serve(model("x", None, params=7_000_000_000, quant={"ollama": "q4_K_M"}), "ollama", ORIN_NANO)
    assert est.known
    assert est.weights == int(7e9 * 4.85 / 8)
    assert est.kv_cache == 144 * 1024 * 8192  # Qwen3-8B's 144 KiB/token
    assert any("Qwen3-8B" in n for n in est.notes)


def test_unknown_size_is_reported_not_failed() -> None:
    m = model("mystery", None, params=None)
    est = serve(m, "ollama", ORIN_NANO)
    assert not est.known and est.fits and est.total == 0
    a = adapter(base="mystery")
    t = estimate_training(plan([m], [hardware()], [a]), a)
    assert not t.known and t.fits
    assert "unknown" in format_table(est)


# --- the table ----------------------------------------------------------------------------
def test_table_format() -> None:
    est = serve(model("q7", QWEN25_7B, quant={"ollama": "f16"}), "ollama", ORIN_NANO)
    lines = format_table(est).splitlines()
    assert lines[0].split() == ["component", "GiB", "how"]
    assert set(lines[1]) == {"-"}
    assert lines[2] == "q7 (ollama f16)"
    rows = {line.strip().split("  ")[0]: line for line in lines[3:]}
    assert list(rows) == ["weights", "KV cache", "runtime overhead", "total", "budget", "verdict"]
    assert all(line.startswith("  ") for line in rows.values())  # indented under their estimate
    gib_end = lines[0].index("GiB") + len("GiB")
    for name in ("weights", "KV cache", "runtime overhead", "total", "budget"):
        number = rows[name][:gib_end].split()[-1]
        assert rows[name][gib_end - 1].isdigit() and float(number) > 0  # right-aligned under GiB
    assert float(rows["total"][:gib_end].split()[-1]) == round(est.total / GIB, 2)
    assert "DOES NOT FIT" in rows["verdict"] and "GiB over" in rows["verdict"]


def test_table_of_several_estimates_and_notes() -> None:
    a = model("a", None, params=3_000_000_000, quant={"ollama": "q4_K_M"}, context=4096)
    b = model("b", QWEN25_1_5B, quant={"ollama": "q8_0"}, context=4096)
    dep = deployment(ORIN_NANO, "ollama", [a, b])
    per_model, total = memory.estimate_deployment(plan([a, b], [ORIN_NANO], deployments=[dep]), dep)
    table = format_table({**per_model, "total": total})
    assert table.count("verdict") == 3
    assert "deployment dep on orin-nano" in table
    assert table.splitlines()[-1].startswith("note: a: no architecture")


def test_shipped_vilms_yaml_fits() -> None:
    from vilms.compiler.pipeline import compile_plan

    _doc, p = compile_plan(REPO / "vilms.yaml")
    assert memory.check_plan(p) == []
    edge = memory.estimate_serving(p, p.deployments["edge"])["qwen2.5-1.5b"]
    assert edge.fits and edge.budget == 7 * GIB
    for dep in p.deployments.values():
        text = "\n".join(memory.explain_lines(p, dep))
        assert text.startswith("placement:" if dep.engine == "vllm" else "memory:") and "\nmemory:" in "\n" + text


def test_build_fails_with_a_located_table(tmp_path: Path) -> None:
    from tests.conftest import run_vilms

    text = (REPO / "vilms.yaml").read_text(encoding="utf-8")
    text = text.replace("orin-nano: {kind: jetson, memory: 8GiB", "orin-nano: {kind: jetson, memory: 2GiB")
    file = tmp_path / "vilms.yaml"
    file.write_text(text, encoding="utf-8")
    result = run_vilms("build", "-f", str(file))
    assert result.code == 1
    assert not (tmp_path / "generated").exists()
    first = result.err.splitlines()[0]
    assert first.startswith("vilms.yaml:") and ": deployments.edge.hardware: deployment 'edge' needs" in first
    assert "DOES NOT FIT" in result.err and "hint:" in result.err and "Traceback" not in result.err


def test_borrowed_shapes_can_be_let_through() -> None:
    # a params-only 0.36 B model trained with a large batch: the borrowed Qwen3-0.6B shape
    # (vocab 151,936) makes the logits dominate, so the verdict is only as good as the guess
    laptop = hardware("laptop", "cpu", memory=16 * GIB)
    m = model("smol", None, params=360_000_000)
    a = adapter(base="smol", method="lora", r=16, batch_size=8, seq_len=1024, hw="laptop")
    p = plan([m], [laptop], [a])
    est = estimate_training(p, a)
    assert est.approximate and not est.fits
    [problem] = memory.check_plan(p)
    assert problem.hint.startswith("declare architecture: (from config.json) for smol")
    assert "use method: qlora" in problem.hint  # QLoRA trains on CPU too (bitsandbytes' CPU backend)
    assert memory.check_plan(p, fail_on_approximate=False) == []
    # with SmolLM2-360M's real shape (vocab 49,152) the same run fits
    smollm2 = {"layers": 32, "hidden_size": 960, "heads": 15, "kv_heads": 5, "head_dim": 64,
               "intermediate_size": 2560, "vocab_size": 49152, "tie_word_embeddings": True}
    exact = model("smol", smollm2)
    assert estimate_training(plan([exact], [laptop], [a]), a).fits
