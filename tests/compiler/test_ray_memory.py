"""engine ray plans memory and GPUs as vLLM does (Ray Serve LLM runs vLLM): per-GPU estimates,
tensor/pipeline parallel from the placement search, located errors for what fits no layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from vilms.compiler.errors import InvalidInputError
from vilms.compiler.memory import check_plan, estimate_serving, placements
from vilms.compiler.pipeline import compile_plan

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ray-cluster" / "vilms.yaml"


def _with_twin(tmp_path: Path, text: str) -> Path:
    """The example plus a vLLM deployment of the same models on the same hardware."""
    source = tmp_path / "vilms.yaml"
    source.write_text(text.replace("\nartifact_store:", "\n  twin: {hardware: h100x4, target: helm, engine: vllm, parallel: 16}\n\n"
                                                          "artifact_store:"), encoding="utf-8")
    return source


def test_ray_places_and_estimates_like_vllm(tmp_path):
    _, plan = compile_plan(_with_twin(tmp_path, EXAMPLE.read_text(encoding="utf-8")))
    ray, twin = plan.deployments["prod"], plan.deployments["twin"]
    ray_places, vllm_places = placements(plan, ray), placements(plan, twin)
    for model in ray.models:
        a, b = ray_places[model], vllm_places[model]
        assert (a.tensor_parallel, a.pipeline_parallel, a.gpus, a.per_gpu_bytes, a.reason) == \
            (b.tensor_parallel, b.pipeline_parallel, b.gpus, b.per_gpu_bytes, b.reason)
    assert ray_places["llama3.1-70b"].tensor_parallel == 4  # 70B bf16 does not fit one 80 GiB GPU
    ray_est, vllm_est = estimate_serving(plan, ray), estimate_serving(plan, twin)
    for model in ray.models:
        assert ray_est[model].total == vllm_est[model].total
        assert "per GPU of TP" in ray_est[model].label and "gpu-memory-utilization 0.9" in ray_est[model].budget_note
    assert check_plan(plan) == []


def test_a_model_that_fits_no_layout_on_ray_is_a_located_error(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "h100x4: {kind: gpu, gpus: 4, gpu_memory: 80GiB, memory: 1TiB, cpus: 96, nodes: 4,",
        "h100x4: {kind: gpu, gpus: 1, gpu_memory: 24GiB, memory: 1TiB, cpus: 96, nodes: 1,")
    source = tmp_path / "vilms.yaml"
    source.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInputError) as caught:
        compile_plan(source)
    rendered = caught.value.render()
    assert "deployments.prod.hardware: model 'llama3.1-70b' fits no layout on 1 node(s) of 1 × 24 GiB GPU" in rendered
    assert "quantization.vllm" in rendered  # the vLLM hint applies to Ray Serve LLM's engine too
