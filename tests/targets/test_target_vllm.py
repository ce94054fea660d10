"""Every generated ``vllm serve --config`` file uses only vLLM 0.33.0 flags, with valid arity, types and
choices, and configures LoRA the way the design requires."""

from __future__ import annotations

import pytest

from tests.support.projects import artefacts, compiled_in_memory
from tests.support.validators import load_yaml, vllm_choices, vllm_flag_errors

CONFIGS = artefacts(lambda rel: "/vllm/" in rel and rel.endswith(".yaml"))
IDS = [f"{p}:{r}" for p, r in CONFIGS]


def _config(project: str, rel: str) -> dict:
    return load_yaml(compiled_in_memory(project)[rel])


def _routes(project: str, rel: str) -> dict:
    return load_yaml(compiled_in_memory(project)[rel.split("/")[0] + "/gateway/routes.yaml"])


def test_configs_cover_lora_parallelism_and_pooling():
    configs = [_config(p, r) for p, r in CONFIGS]
    assert any(c.get("enable-lora") for c in configs)
    assert any(c["tensor-parallel-size"] > 1 for c in configs)
    assert any("max-num-seqs" in c for c in configs)
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
        assert "enable-lora" not in config and "max-lora-rank" not in config
        return
    assert config["enable-lora"] is True
    largest = max(training[a["adapter"]["name"]]["lora"]["r"] for a in adapters.values())
    allowed = sorted(int(c) for c in vllm_choices("--max-lora-rank"))
    assert config["max-lora-rank"] == min(r for r in allowed if r >= largest)
    declared = {a["adapter"]["name"] for a in adapters.values()}
    assert config["max-loras"] == len(declared) and config["max-cpu-loras"] >= config["max-loras"]
    # released adapters are loaded at run time by the gateway, never named in the engine's config:
    # a release or rollback changes the routes only
    assert "lora-modules" not in config
    for route in adapters.values():
        ref = route["adapter"]
        if ref["released"]:
            assert route["model"] == ref["run"] and ref["path"].endswith(f"/{ref['run']}/adapter")


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
    """Several vLLM engines on the same GPU (or a Jetson's unified memory) must not each claim 90% of it."""
    by_device: dict[tuple[str, str, str], float] = {}
    for project, rel in CONFIGS:
        files = compiled_in_memory(project)
        dep = rel.split("/")[0]
        if f"{dep}/docker-compose.yaml" not in files:
            continue  # Helm: each engine is its own pod with its own GPUs
        services = load_yaml(files[f"{dep}/docker-compose.yaml"])["services"]
        share = _config(project, rel)["gpu-memory-utilization"]
        for service in services.values():
            if service.get("volumes", [""])[0].startswith(f"./{rel.split('/', 1)[1]}:"):
                devices = service["deploy"]["resources"].get("reservations", {}).get("devices", [{}])[0]
                for device in devices.get("device_ids", ["unified"]):
                    key = (project, dep, device)
                    by_device[key] = by_device.get(key, 0.0) + share
    assert len(by_device) >= 3 and all(total <= 0.95 for total in by_device.values()), by_device


def test_each_engine_share_covers_its_estimated_need():
    """vLLM pre-allocates its share at start: on a shared host each engine's share of the GPUs must
    hold what the memory planner estimates for it (weights + KV cache + LoRA + runtime)."""
    import tempfile
    from pathlib import Path

    from tests.support.projects import projects, source_of
    from vilms.compiler.memory import estimate_serving
    from vilms.compiler.pipeline import compile_plan

    checked = 0
    for project in projects():
        with tempfile.TemporaryDirectory() as tmp:
            _doc, plan = compile_plan(source_of(project, Path(tmp)))
        for dep in plan.deployments.values():
            if dep.engine != "vllm" or dep.target == "helm":
                continue
            hw = dep.hardware
            # on GPUs each engine's share is of each of its own GPUs; a Jetson's is of the unified memory
            total = hw.gpu_memory_bytes if hw.kind == "gpu" else hw.memory_bytes
            files = compiled_in_memory(project.name)
            for model in dep.models:
                share = load_yaml(files[f"{dep.name}/vllm/{model}.yaml"])["gpu-memory-utilization"]
                need = estimate_serving(plan, dep)[model]
                assert share * total >= need.total, (project.name, dep.name, model, share, need.total)
                checked += 1
    assert checked >= 4
