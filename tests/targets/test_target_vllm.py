"""Every generated ``vllm serve --config`` file uses only vLLM 0.33.0 flags, with valid arity, types and
choices, and configures LoRA the way the design requires."""

from __future__ import annotations

import json

import pytest

from tests.support.projects import artefacts, compiled_in_memory
from tests.support.validators import load_yaml, vllm_choices, vllm_flag_errors

CONFIGS = artefacts(lambda rel: "/vllm/" in rel and rel.endswith(".yaml"))
IDS = [f"{p}:{r}" for p, r in CONFIGS]


def _config(project: str, rel: str) -> dict:
    return load_yaml(compiled_in_memory(project)[rel])


def _routes(project: str, rel: str) -> dict:
    return load_yaml(compiled_in_memory(project)[rel.split("/")[0] + "/gateway/routes.yaml"])


def test_configs_cover_lora_released_and_unreleased():
    configs = [_config(p, r) for p, r in CONFIGS]
    assert any("lora-modules" in c for c in configs)
    assert any(c.get("enable-lora") and "lora-modules" not in c for c in configs)
    assert any(c.get("runner") == "pooling" for c in configs)


@pytest.mark.parametrize(("project", "rel"), CONFIGS, ids=IDS)
def test_only_vllm_flags_with_valid_values(project, rel):
    assert vllm_flag_errors(_config(project, rel)) == []


@pytest.mark.parametrize(("project", "rel"), CONFIGS, ids=IDS)
def test_lora_matches_the_served_adapters(project, rel):
    config = _config(project, rel)
    routes = _routes(project, rel)
    model = config["served-model-name"][0]
    adapters = {a["model"]: a for a in routes["aliases"].values() if a["adapter"] and a["backend"] == f"vllm-{model}"}
    training = {r.split("/")[1][:-5]: load_yaml(d) for r, d in compiled_in_memory(project).items() if r.startswith("training/")}
    if not adapters:
        assert "enable-lora" not in config and "lora-modules" not in config and "max-lora-rank" not in config
        return
    assert config["enable-lora"] is True
    largest = max(training[name]["lora"]["r"] for name in adapters)
    allowed = sorted(int(c) for c in vllm_choices("--max-lora-rank"))
    assert config["max-lora-rank"] == min(r for r in allowed if r >= largest)
    assert config["max-loras"] >= 1 and config.get("max-cpu-loras", config["max-loras"]) >= config["max-loras"]
    released = {name for name, a in adapters.items() if a["adapter"]["released"]}
    modules = [json.loads(m) for m in config.get("lora-modules", [])]
    assert {m["name"] for m in modules} == released
    for m in modules:
        assert m["base_model_name"] == model and m["path"].endswith("/adapter")


@pytest.mark.parametrize(("project", "rel"), CONFIGS, ids=IDS)
def test_hardware_derived_settings(project, rel):
    config = _config(project, rel)
    routes = _routes(project, rel)
    hw = routes["hardware"]
    assert 0 < config["gpu-memory-utilization"] <= 0.95
    assert config["max-model-len"] <= max(a["context"] for a in routes["aliases"].values())
    assert config["tensor-parallel-size"] >= 1
    if hw["kind"] == "jetson":
        assert config["tensor-parallel-size"] == 1


def test_gpu_memory_is_shared_between_engines_on_one_host():
    """Several vLLM engines on the same GPUs must not each claim 90% of them."""
    by_dep: dict[tuple[str, str], float] = {}
    for project, rel in CONFIGS:
        files = compiled_in_memory(project)
        dep = rel.split("/")[0]
        if f"{dep}/docker-compose.yaml" not in files:
            continue  # Helm: each engine is its own pod with its own GPUs
        by_dep[(project, dep)] = by_dep.get((project, dep), 0.0) + _config(project, rel)["gpu-memory-utilization"]
    assert by_dep and all(total <= 0.95 for total in by_dep.values()), by_dep


def test_each_engine_share_covers_its_estimated_need():
    """vLLM pre-allocates its share at start: on a shared host each engine's share of the GPUs must
    hold what the memory planner estimates for it (weights + KV cache + LoRA + runtime)."""
    import tempfile
    from pathlib import Path

    from tests.support.projects import projects, source_of
    from vilms.compiler.memory import estimate_model
    from vilms.compiler.pipeline import compile_plan

    checked = 0
    for project in projects():
        with tempfile.TemporaryDirectory() as tmp:
            _doc, plan = compile_plan(source_of(project, Path(tmp)))
        for dep in plan.deployments.values():
            if dep.engine != "vllm" or dep.target == "helm":
                continue
            hw = dep.hardware
            total = hw.gpus * hw.gpu_memory_bytes if hw.kind == "gpu" else hw.memory_bytes
            files = compiled_in_memory(project.name)
            for model in dep.models:
                share = load_yaml(files[f"{dep.name}/vllm/{model}.yaml"])["gpu-memory-utilization"]
                need = estimate_model(plan, dep, model)
                assert share * total >= need.total, (project.name, dep.name, model, share, need.total)
                checked += 1
    assert checked >= 4
