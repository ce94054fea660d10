"""What `vilms explain` says about placement, on published architectures: a 0.5 B model on two
H100s takes one GPU; Llama-3-70B in bf16 needs tensor parallel on 80 GiB GPUs; Llama-3.1-405B
runs tensor parallel within a node and pipeline parallel across two nodes. Run with ``-s`` to
read the explanations."""

from __future__ import annotations

from pathlib import Path

import pytest

# config.json of Qwen/Qwen2.5-0.5B-Instruct, meta-llama/Meta-Llama-3-70B-Instruct, meta-llama/Llama-3.1-405B-Instruct
PROJECT = """\
apiVersion: vilms/v1
project: sizes
hardware:
  h100x2: {kind: gpu, gpus: 2, gpu_memory: 80GiB, memory: 512GiB}
  h100x8: {kind: gpu, gpus: 8, gpu_memory: 80GiB, memory: 2048GiB, nodes: 2}
models:
  qwen2.5-0.5b:
    source: hf:Qwen/Qwen2.5-0.5B-Instruct
    family: qwen2
    context: 32768
    chat_template: chatml
    architecture: {layers: 24, hidden_size: 896, heads: 14, kv_heads: 2, head_dim: 64,
                   intermediate_size: 4864, vocab_size: 151936, tie_word_embeddings: true}
  llama3-70b:
    source: hf:meta-llama/Meta-Llama-3-70B-Instruct
    family: llama
    context: 8192
    chat_template: llama3
    dtype: bfloat16
    architecture: {layers: 80, hidden_size: 8192, heads: 64, kv_heads: 8, head_dim: 128,
                   intermediate_size: 28672, vocab_size: 128256, tie_word_embeddings: false}
  llama3.1-405b:
    source: hf:meta-llama/Llama-3.1-405B-Instruct
    family: llama
    context: 8192
    chat_template: llama3
    dtype: bfloat16
    architecture: {layers: 126, hidden_size: 16384, heads: 128, kv_heads: 8, head_dim: 128,
                   intermediate_size: 53248, vocab_size: 128256, tie_word_embeddings: false}
aliases:
  small: qwen2.5-0.5b
  large: llama3-70b
  huge: llama3.1-405b
deployments:
  small: {hardware: h100x2, target: helm, engine: vllm, aliases: [small]}
  large: {hardware: h100x8, target: helm, engine: vllm, aliases: [large]}
  huge: {hardware: h100x8, target: helm, engine: vllm, aliases: [huge]}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    file = tmp_path_factory.mktemp("sizes") / "vilms.yaml"
    file.write_text(PROJECT, encoding="utf-8")
    return file


def explain(project: Path, deployment: str) -> str:
    from tests.conftest import run_vilms

    result = run_vilms("explain", deployment, "-f", str(project))
    assert result.code == 0, result.err
    print(result.out)
    return result.out


def placement_line(text: str, model: str) -> str:
    return next(line.strip() for line in text.splitlines() if line.strip().startswith(f"{model}: tensor parallel"))


def test_a_half_billion_model_takes_one_of_two_gpus(project: Path) -> None:
    line = placement_line(explain(project, "small"), "qwen2.5-0.5b")
    assert line.startswith("qwen2.5-0.5b: tensor parallel 1, pipeline parallel 1: 1 GPU(s) per replica")


def test_70b_bf16_on_80gib_gpus_gets_tensor_parallel(project: Path) -> None:
    text = explain(project, "large")
    line = placement_line(text, "llama3-70b")
    tp = int(line.split("tensor parallel ", 1)[1].split(",", 1)[0])
    assert tp >= 2 and "pipeline parallel 1" in line
    assert "why: the smallest tensor parallel that divides the 64 attention heads and fits the per-GPU estimate" in text
    assert f"llama3-70b (vllm), per GPU of TP {tp}" in text  # the memory table is per GPU


def test_405b_spans_two_nodes(project: Path) -> None:
    text = explain(project, "huge")
    assert "hardware h100x8: gpu, memory 2048.00 GiB, 8 x 80.00 GiB GPU per node, 2 nodes" in text
    assert placement_line(text, "llama3.1-405b").startswith(
        "llama3.1-405b: tensor parallel 8, pipeline parallel 2: 16 GPU(s) per replica on 2 nodes of 8")
    assert "2 pipeline stages on 2 nodes: one node is not enough" in text
