"""The placement planner: tensor parallel chosen from the per-GPU estimate and vLLM's head rule,
pipeline parallel across nodes, declared serving values honoured or refused with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from tests.compiler.test_memory import GIB, LLAMA_31_8B, QWEN25_1_5B, deployment, hardware, model, plan
from vilms.compiler.memory.placement import Placement, estimate_per_gpu, placements, problems, tp_allowed
from vilms.compiler.plan import Deployment, Hardware, ModelServing, Plan, frozen

# published config.json values
LLAMA_3_70B = {"layers": 80, "hidden_size": 8192, "heads": 64, "kv_heads": 8, "head_dim": 128,
               "intermediate_size": 28672, "vocab_size": 128256, "tie_word_embeddings": False}
QWEN25_05B = {"layers": 24, "hidden_size": 896, "heads": 14, "kv_heads": 2, "head_dim": 64,
              "intermediate_size": 4864, "vocab_size": 151936, "tie_word_embeddings": True}
LLAMA_31_405B = {"layers": 126, "hidden_size": 16384, "heads": 128, "kv_heads": 8, "head_dim": 128,
                 "intermediate_size": 53248, "vocab_size": 128256, "tie_word_embeddings": False}


def gpus(n: int, memory: int = 80, nodes: int = 1) -> Hardware:
    hw = hardware(gpus=n, gpu_memory=memory * GIB, memory=512 * GIB)
    return Hardware(**{**hw.__dict__, "nodes": nodes})


def serve(arch: dict[str, Any] | None, hw: Hardware, *, target: str = "helm", context: int = 8192,
          params: int | None = None, **serving: Any) -> tuple[Plan, Deployment]:
    m = model("m", arch, params=params, context=context)
    dep = deployment(hw, "vllm", [m], target=target)
    if serving:
        declared = ModelServing(**{"gpus": None, "tensor_parallel": None, "pipeline_parallel": None,
                                   "replicas": None, "max_num_seqs": None, "autoscale": frozen(), **serving})
        dep = Deployment(**{**dep.__dict__, "serving": frozen({"m": declared})})
    return plan([m], [hw], deployments=[dep]), dep


def place(arch: dict[str, Any] | None, hw: Hardware, **kw: Any) -> Placement:
    p, dep = serve(arch, hw, **kw)
    assert problems(p, dep) == []
    return placements(p, dep)["m"]


def layout(pl: Placement) -> tuple[int, int, int, int, int]:
    return pl.tensor_parallel, pl.pipeline_parallel, pl.gpus, pl.nodes, pl.gpus_per_node


# --- vLLM's head rule --------------------------------------------------------------------------
def test_tp_must_divide_heads_and_kv_heads_divide_or_replicate() -> None:
    assert [t for t in range(1, 17) if tp_allowed(64, 8, t)] == [1, 2, 4, 8, 16]  # 16 replicates KV heads
    assert [t for t in range(1, 17) if tp_allowed(14, 2, t)] == [1, 2, 14]
    assert not tp_allowed(32, 8, 3)
    assert not tp_allowed(12, 8, 6)  # 8 KV heads neither split over 6 nor replicate


# --- the default choice --------------------------------------------------------------------
def test_half_billion_model_on_two_h100_gets_one_gpu() -> None:
    pl = place(QWEN25_05B, gpus(2), context=32768)
    assert layout(pl) == (1, 1, 1, 1, 1)
    assert "smallest tensor parallel" in pl.reason and "14 attention heads" in pl.reason


def test_70b_bf16_on_80gib_gpus_needs_tensor_parallel() -> None:
    pl = place(LLAMA_3_70B, gpus(8))
    assert pl.tensor_parallel >= 2 and pl.pipeline_parallel == 1 and pl.nodes == 1
    # the chosen layout fits one GPU; the next smaller one would not
    assert pl.per_gpu_bytes is not None and pl.per_gpu_bytes <= 0.9 * 80 * GIB
    p, dep = serve(LLAMA_3_70B, gpus(8), tensor_parallel=pl.tensor_parallel // 2)
    assert [x.path[-1] for x in problems(p, dep)] == ["tensor_parallel"]
    assert pl.weight_bytes is not None and 130 * GIB < pl.weight_bytes < 132 * GIB  # 70.55 B × 2 bytes


def test_per_gpu_estimate_splits_weights_and_kv_heads() -> None:
    p, dep = serve(LLAMA_3_70B, gpus(8), tensor_parallel=4)
    per_gpu = estimate_per_gpu(p, dep, "m")
    whole_p, whole_dep = serve(LLAMA_3_70B, gpus(8), tensor_parallel=1)
    whole = estimate_per_gpu(whole_p, whole_dep, "m")
    assert per_gpu.weights == whole.weights // 4
    assert per_gpu.kv_cache == whole.kv_cache // 4  # 8 KV heads over 4 ranks: 2 each
    assert per_gpu.runtime == whole.runtime  # CUDA context and graphs on every GPU
    assert per_gpu.budget == int(80 * GIB * 0.9)
    assert per_gpu.label.endswith("per GPU of TP 4")


def test_replicated_kv_heads_are_not_split() -> None:
    # Qwen2.5-0.5B has 2 KV heads: over TP 14 each rank keeps a whole KV head
    p, dep = serve(QWEN25_05B, gpus(16), tensor_parallel=14)
    one_p, one_dep = serve(QWEN25_05B, gpus(16), tensor_parallel=1)
    assert estimate_per_gpu(p, dep, "m").kv_cache == estimate_per_gpu(one_p, one_dep, "m").kv_cache // 2


def test_pipeline_parallel_across_nodes_when_one_node_is_not_enough() -> None:
    pl = place(LLAMA_31_405B, gpus(8, nodes=4))
    assert layout(pl) == (8, 2, 16, 2, 8)
    assert "2 pipeline stages on 2 nodes" in pl.reason


def test_too_big_for_every_layout_is_located_at_the_hardware() -> None:
    p, dep = serve(LLAMA_31_405B, gpus(8, nodes=1))
    [problem] = problems(p, dep)
    assert problem.path == ("deployments", "dep", "hardware")
    assert "fits no layout on 1 node(s) of 8 × 80 GiB GPU" in problem.message
    assert "quantized" in problem.hint
    assert layout(placements(p, dep)["m"]) == (8, 1, 8, 1, 8)  # still a placement to show


def test_compose_is_one_host_even_on_a_multi_node_profile() -> None:
    p, dep = serve(LLAMA_31_405B, gpus(8, nodes=4), target="compose")
    [problem] = problems(p, dep)
    assert problem.path == ("deployments", "dep", "hardware")


def test_unknown_architecture_chooses_by_memory_only() -> None:
    pl = place(None, gpus(4), params=70_000_000_000)
    assert pl.tensor_parallel >= 2
    assert "no architecture: heads not checked" in pl.reason


def test_unknown_memory_takes_one_gpu() -> None:
    pl = place(None, gpus(4))
    assert layout(pl) == (1, 1, 1, 1, 1) and pl.per_gpu_bytes is None and pl.weight_bytes is None
    assert "memory unknown" in pl.reason


def test_other_engines_and_boards_have_no_choice() -> None:
    m = model("q", QWEN25_1_5B)
    for hw, engine, expect in ((hardware("nano", "jetson", memory=8 * GIB), "vllm", 1),
                               (hardware("cpu", "cpu"), "ollama", 0), (gpus(2), "ollama", 2)):
        dep = deployment(hw, engine, [m])
        pl = placements(plan([m], [hw], deployments=[dep]), dep)["q"]
        assert (pl.tensor_parallel, pl.pipeline_parallel, pl.gpus, pl.nodes) == (1, 1, expect, 1)


# --- declared values -----------------------------------------------------------------------
def test_declared_values_override_the_planner() -> None:
    pl = place(LLAMA_31_8B, gpus(8), tensor_parallel=4, replicas=3, max_num_seqs=64)
    assert layout(pl) == (4, 1, 4, 1, 4) and pl.replicas == 3 and pl.max_num_seqs == 64
    assert pl.reason == "declared in serving"


def test_declared_gpus_alone_fill_a_node_then_stages() -> None:
    assert layout(place(LLAMA_31_8B, gpus(8), gpus=2)) == (2, 1, 2, 1, 2)
    assert layout(place(LLAMA_31_405B, gpus(8, nodes=2), gpus=16)) == (8, 2, 16, 2, 8)


def test_declared_pipeline_parallel_on_one_node() -> None:
    assert layout(place(LLAMA_31_8B, gpus(8), pipeline_parallel=2)) == (1, 2, 2, 1, 2)
    assert layout(place(LLAMA_31_8B, gpus(8), gpus=4, tensor_parallel=1)) == (1, 4, 4, 1, 4)


def test_max_num_seqs_feeds_the_kv_cache() -> None:
    small_p, small = serve(LLAMA_31_8B, gpus(1), max_num_seqs=2)
    big_p, big = serve(LLAMA_31_8B, gpus(1), max_num_seqs=8)
    assert estimate_per_gpu(big_p, big, "m").kv_cache == 4 * estimate_per_gpu(small_p, small, "m").kv_cache


@pytest.mark.parametrize(("hw", "serving", "key", "words"), [
    (gpus(8), {"tensor_parallel": 3}, "tensor_parallel", "tensor parallel 3 does not divide the attention heads"),
    (gpus(8), {"gpus": 3}, "gpus", "tensor parallel 3 does not divide"),
    (gpus(8), {"gpus": 3, "tensor_parallel": 2, "pipeline_parallel": 2}, "gpus", "gpus 3 is not tensor_parallel × pipeline_parallel (2 × 2 = 4)"),
    (gpus(8), {"gpus": 6, "tensor_parallel": 4}, "gpus", "gpus 6 is not a multiple of tensor_parallel 4"),
    (gpus(2), {"tensor_parallel": 4}, "tensor_parallel", "tensor parallel 4 is more than the 2 GPU(s) of one node"),
    (gpus(8, nodes=2), {"pipeline_parallel": 3, "tensor_parallel": 8}, "tensor_parallel", "3 pipeline stages of 8 GPUs need 3 nodes"),
    (gpus(1), {"tensor_parallel": 1, "max_num_seqs": 4096}, "tensor_parallel", "needs"),
])
def test_declared_values_that_cannot_work_are_located(hw: Hardware, serving: dict[str, int], key: str, words: str) -> None:
    p, dep = serve(LLAMA_31_8B, hw, context=32768, **serving)
    [problem] = problems(p, dep)
    assert problem.path == ("deployments", "dep", "serving", "m", key)
    assert words in problem.message, problem.message
    assert problem.hint


def test_more_gpus_than_a_compose_host_is_located() -> None:
    p, dep = serve(LLAMA_31_8B, gpus(2, nodes=3), target="compose", gpus=4)
    [problem] = problems(p, dep)
    assert problem.path[-1] == "gpus"
    assert "target compose runs on one host" in problem.message and "helm" in problem.hint
