"""Property-based: any ``serving:`` block on any GPU profile builds with a placement vLLM accepts,
or is refused with located diagnostics, never a traceback.

When it builds: every vLLM config's tensor parallel divides the attention heads the way vLLM
requires, only vLLM 0.33.0 flags are written, tensor × pipeline parallel fits the profile (one node off helm), declared values are
kept, and on compose every engine and replica holds GPUs no other engine holds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.property.test_compile_anything import build_or_locate
from tests.support.validators import vllm_flag_errors
from vilms.compiler.memory.placement import tp_allowed

SCALE = float(os.environ.get("VILMS_PROPERTY_SCALE", "1"))
# mostly unset or a power of two, sometimes anything: about a quarter of the documents still build
SMALL = st.one_of(st.none(), st.none(), st.none(), st.sampled_from([1, 2, 4, 8]), st.integers(min_value=1, max_value=12))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving")


@st.composite
def projects(draw: st.DrawFn) -> dict[str, Any]:
    heads = draw(st.sampled_from([12, 14, 28, 32, 40, 64]))
    kv_heads = draw(st.sampled_from([k for k in (1, 2, 4, 8, heads) if heads % k == 0]))
    layers = draw(st.integers(min_value=8, max_value=96))
    hidden = heads * 128
    target = draw(st.sampled_from(["helm", "compose"]))
    gpu = {"kind": "gpu", "gpus": draw(st.integers(min_value=1, max_value=8)), "gpu_memory": f"{draw(st.sampled_from([16, 24, 80]))}GiB",
           "memory": "512GiB", "nodes": draw(st.integers(min_value=1, max_value=4))}
    models: dict[str, Any] = {}
    serving: dict[str, Any] = {}
    for i in range(draw(st.integers(min_value=1, max_value=3))):
        name = f"m{i}"
        models[name] = {"source": f"hf:org/{name}", "family": "llama", "context": draw(st.sampled_from([2048, 8192, 32768])),
                        "architecture": {"layers": layers, "hidden_size": hidden, "heads": heads, "kv_heads": kv_heads,
                                         "head_dim": 128, "intermediate_size": hidden * 3, "vocab_size": 32000}}
        declared = {k: v for k, v in {"gpus": draw(SMALL), "tensor_parallel": draw(SMALL), "pipeline_parallel": draw(SMALL),
                                      "replicas": draw(st.one_of(st.none(), st.integers(1, 3))),
                                      "max_num_seqs": draw(st.one_of(st.none(), st.integers(1, 64)))}.items() if v is not None}
        if declared:
            serving[draw(st.sampled_from([name] * 5 + [name + "x"]))] = declared
    deployment: dict[str, Any] = {"hardware": "box", "target": target, "engine": "vllm"}
    if serving:
        deployment["serving"] = serving
    return {"apiVersion": "vilms/v1", "project": "p", "hardware": {"box": gpu}, "models": models,
            "aliases": {f"a-{m}": m for m in models}, "deployments": {"d": deployment}}


@settings(max_examples=max(1, int(200 * SCALE)), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(doc=projects())
def test_serving_blocks_build_a_valid_placement_or_fail_located(doc: dict[str, Any], root: Path) -> None:
    check(doc, root)


def test_the_strategy_is_not_vacuous(root: Path) -> None:
    """A good share of the drawn documents build (and pass the checks)."""
    built = 0

    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(doc=projects())
    def count(doc: dict[str, Any]) -> None:
        nonlocal built
        built += check(doc, root)

    count()
    assert built >= 12


def check(doc: dict[str, Any], root: Path) -> bool:
    files = build_or_locate(yaml.safe_dump(doc, sort_keys=False).encode(), root)
    if files is None:
        return False
    hw = doc["hardware"]["box"]
    dep = doc["deployments"]["d"]
    taken: list[str] = []
    for name, model in doc["models"].items():
        config = yaml.safe_load(files[f"d/vllm/{name}.yaml"])
        assert vllm_flag_errors(config) == []
        arch = model["architecture"]
        tp, pp = config["tensor-parallel-size"], config.get("pipeline-parallel-size", 1)
        assert tp_allowed(arch["heads"], arch["kv_heads"], tp)
        assert tp <= hw["gpus"] and (tp * pp <= hw["gpus"] or (dep["target"] == "helm" and pp <= hw["nodes"]))
        declared = dep.get("serving", {}).get(name, {})
        assert declared.get("tensor_parallel", tp) == tp and declared.get("pipeline_parallel", pp) == pp
        assert declared.get("gpus", tp * pp) == tp * pp
        if "max_num_seqs" in declared:
            assert config["max-num-seqs"] == declared["max_num_seqs"]
    if dep["target"] == "compose":
        services = yaml.safe_load(files["d/docker-compose.yaml"])["services"]
        for service_name, service in services.items():
            if service_name.startswith("vllm"):
                taken.extend(service["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"])
        assert len(taken) == len(set(taken)) and all(int(i) < hw["gpus"] for i in taken)
    return True
