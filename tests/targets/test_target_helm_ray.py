"""engine ray: the RayService the chart renders, checked by what consumes it.

Every RayService validates strictly against KubeRay's CRD (tests/crds/rayservice_v1.json, through
``manifest_problems`` with the other objects); its ``serveConfigV2`` against Ray 2.60's exported
ServeDeploySchema and each ``llm_configs`` entry against LLMConfig's schema
(tests/support/data/ray-2.60/), and, since the object-store URI rule and the accelerator names are
enforced by Ray's validators and not by the schemas, by Ray 2.60's own pydantic models too
(``ray.serve.schema.ServeDeploySchema``, ``ray.llm._internal.serve.core.configs.llm_config.LLMConfig``,
importable without vLLM once Ray Serve's dependencies are installed: ``ray[serve]`` in the dev extra).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema
import pytest

from tests.support.projects import compiled_in_memory
from tests.support.validators import DATA, helm_render, load_yaml, manifest_problems, manifests, vllm_flag_table
from tests.targets.test_target_helm import CHARTS, _everything_on, _values
from vilms.compiler.explain import explain_deployment
from vilms.compiler.facts import ray as ray_facts
from vilms.compiler.pipeline import compile_files, compile_plan
from vilms.compiler.render.vllm import SERVER_ARGS, flag_name

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "ray-cluster" / "vilms.yaml"
RAY_SCHEMAS = DATA / "ray-2.60"
RAY_CHARTS = [(p, c) for p, c in CHARTS if _values(p, c)["ray"]["enabled"]]
RAY_IDS = [f"{p}:{c}" for p, c in RAY_CHARTS]
SCENARIOS = {"generated": lambda v: v, "everything-on": _everything_on}
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Serve's own pydantic Field(...) extras


@cache
def _schema_validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((RAY_SCHEMAS / name).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _errors(name: str, data: object) -> list[str]:
    return sorted(f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
                  for e in _schema_validator(name).iter_errors(data))


def _rayservice(project: str, chart: str, generated_tree, scenario: str = "generated") -> tuple[dict, list[dict]]:
    values = SCENARIOS[scenario](_values(project, chart))
    docs = manifests(helm_render(generated_tree(project) / chart, values, release=project[:20]))
    services = [d for d in docs if d["kind"] == "RayService"]
    assert len(services) == 1
    return services[0], docs


def _llm_configs(service: dict) -> list[dict]:
    config = load_yaml(service["spec"]["serveConfigV2"])
    (app,) = config["applications"]
    return app["args"]["llm_configs"]


def test_ray_charts_are_covered():
    assert {p for p, _ in RAY_CHARTS} == {"example-ray-cluster", "fx-helm-ray-pp"}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize(("project", "chart"), RAY_CHARTS, ids=RAY_IDS)
def test_rayservice_and_serve_config_validate_against_their_schemas(project, chart, scenario, generated_tree):
    service, docs = _rayservice(project, chart, generated_tree, scenario)
    assert manifest_problems(docs) == []  # the RayService against KubeRay's strict CRD schema, the rest too
    config = load_yaml(service["spec"]["serveConfigV2"])
    assert _errors("serve-deploy-schema.json", config) == []
    (app,) = config["applications"]
    assert (app["import_path"], app["name"], app["route_prefix"]) == (
        ray_facts.LLM_APP_IMPORT_PATH, ray_facts.LLM_APP_NAME, ray_facts.ROUTE_PREFIX)
    for entry in app["args"]["llm_configs"]:
        assert _errors("serve-llm-config.json", entry) == []


@pytest.mark.parametrize(("project", "chart"), RAY_CHARTS, ids=RAY_IDS)
def test_ray_accepts_every_llm_config_with_its_own_models(project, chart, generated_tree):
    from ray.llm._internal.serve.core.configs.llm_config import LLMConfig
    from ray.serve.schema import ServeDeploySchema

    service, _ = _rayservice(project, chart, generated_tree)
    ServeDeploySchema.model_validate(load_yaml(service["spec"]["serveConfigV2"]))
    for entry in _llm_configs(service):
        parsed = LLMConfig.model_validate(entry)
        assert parsed.model_id == entry["model_loading_config"]["model_id"]
        if "lora_config" in entry:
            assert parsed.lora_config.dynamic_lora_loading_path == entry["lora_config"]["dynamic_lora_loading_path"]


def test_ray_refuses_an_adapter_path_that_is_not_an_object_store(generated_tree):
    """The rule the schema cannot say: what ViLMS writes passes Ray's validator, a local path does not."""
    from pydantic import ValidationError
    from ray.llm._internal.common.utils.cloud_utils import is_remote_path
    from ray.llm._internal.serve.core.configs.llm_config import LLMConfig

    service, _ = _rayservice("example-ray-cluster", "prod/helm", generated_tree)
    entry = next(e for e in _llm_configs(service) if "lora_config" in e)
    assert entry["lora_config"]["dynamic_lora_loading_path"].startswith(ray_facts.LORA_URI_SCHEMES)
    for path in ("/vilms/artifacts", "file:///tmp/adapters", "http://minio:9000/adapters"):
        with pytest.raises(ValidationError, match="dynamic_lora_loading_path"):
            LLMConfig.model_validate({**entry, "lora_config": {**entry["lora_config"], "dynamic_lora_loading_path": path}})
    assert all(is_remote_path(f"{scheme}bucket/prefix") for scheme in ray_facts.LORA_URI_SCHEMES)


def test_accelerator_types_are_what_ray_detects_and_accepts():
    """Each gpu_type (GPU Feature Discovery's product label: the NVML name with '-' for spaces) maps to the
    accelerator type a Ray node with that GPU advertises, and Ray's LLMConfig accepts it."""
    from ray._private.accelerators.nvidia_gpu import NvidiaGPUAcceleratorManager
    from ray.llm._internal.serve.core.configs.llm_config import LLMConfig

    for gpu_type, value in ray_facts.ACCELERATOR_TYPES.items():
        assert NvidiaGPUAcceleratorManager._gpu_name_to_accelerator_type(gpu_type.replace("-", " ")) == value, gpu_type
        LLMConfig.model_validate({"model_loading_config": {"model_id": "m"}, "accelerator_type": value})


@pytest.mark.parametrize(("project", "chart"), RAY_CHARTS, ids=RAY_IDS)
def test_engine_kwargs_are_vllm_engine_arguments(project, chart, generated_tree):
    dests = {flag["dest"] for flag in vllm_flag_table().values()}
    service, _ = _rayservice(project, chart, generated_tree)
    for entry in _llm_configs(service):
        kwargs = entry["engine_kwargs"]
        assert set(kwargs) <= dests, set(kwargs) - dests
        assert not set(kwargs) & set(SERVER_ARGS)  # Ray Serve LLM refuses model / served_model_name there
        assert kwargs["tensor_parallel_size"] >= 1 and kwargs["gpu_memory_utilization"] == 0.9


def test_engine_kwargs_and_the_vllm_config_are_one_mapping(tmp_path):
    """The same models on the same hardware under engine vllm: every vllm.yaml is the model's engine_kwargs
    under flag names, plus the server's own arguments."""
    twin = EXAMPLE.read_text(encoding="utf-8").replace(
        "\nartifact_store:",
        "\n  twin: {hardware: h100x4, target: helm, engine: vllm, parallel: 16}\n\nartifact_store:")
    source = tmp_path / "vilms.yaml"
    source.write_text(twin, encoding="utf-8")
    _, _, files = compile_files(source)
    configs = _llm_configs({"spec": {"serveConfigV2": load_yaml(files["prod/helm/values.yaml"])["ray"]["serveConfig"]}})
    assert len(configs) == 2
    for entry in configs:
        model = entry["model_loading_config"]["model_id"]
        vllm = load_yaml(files[f"twin/vllm/{model}.yaml"])
        server = {flag_name(d) for d in SERVER_ARGS}
        assert {flag_name(k): v for k, v in entry["engine_kwargs"].items()} == {k: v for k, v in vllm.items() if k not in server}
        assert entry["model_loading_config"]["model_source"] == vllm["model"]


@pytest.mark.parametrize(("project", "chart"), RAY_CHARTS, ids=RAY_IDS)
def test_rayservice_is_laid_out_for_ray_serve(project, chart, generated_tree):
    service, docs = _rayservice(project, chart, generated_tree, "everything-on")
    values = _values(project, chart)
    cluster = service["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    head_container = head["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in json.dumps(head_container["resources"])
    (workers,) = cluster["workerGroupSpecs"]
    worker = workers["template"]["spec"]["containers"][0]
    gpus = values["ray"]["workers"]["resources"]["limits"]["nvidia.com/gpu"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    assert cluster["enableInTreeAutoscaling"] == (workers["minReplicas"] != workers["maxReplicas"])
    assert worker["readinessProbe"]["httpGet"]["path"] == ray_facts.SERVE_HEALTH_PATH
    assert {p["containerPort"] for p in worker["ports"]} == {ray_facts.SERVE_PORT}
    pod = workers["template"]["spec"]
    assert pod["nodeSelector"] == values["ray"]["nodeSelector"]
    assert {v["name"] for v in pod["volumes"]} == {"model-cache", "shm"}
    assert next(v for v in pod["volumes"] if v["name"] == "model-cache")["persistentVolumeClaim"] == {"claimName": "model-cache"}
    # credentials only by reference: AWS_* keys and HF_TOKEN come from the project secret
    env = {e["name"]: e for e in worker["env"]}
    for name in (ray_facts.S3_ENV_ACCESS_KEY_ID, ray_facts.S3_ENV_SECRET_ACCESS_KEY):
        assert set(env[name]) == {"name", "valueFrom"}
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == f"{values['project']}-secrets"
    assert env[ray_facts.S3_ENV_REGION]["value"]
    # no vLLM engine is rendered; the gateway sends to KubeRay's Serve Service
    assert not [d for d in docs if "-vllm-" in d["metadata"]["name"]]
    assert not [d for d in docs if d["kind"] in ("LeaderWorkerSet", "ScaledObject", "PodMonitor")]
    gateway = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-gateway"))
    assert gateway["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    routes = load_yaml(next(d for d in docs if d["metadata"]["name"].endswith("-gateway-routes"))["data"]["routes.yaml"])
    backend = routes["backends"]["ray"]
    assert backend["endpoints"] == [f"http://{service['metadata']['name']}{ray_facts.SERVE_SERVICE_SUFFIX}:{ray_facts.SERVE_PORT}"]
    assert (backend["engine"], backend["runtime_lora"]) == ("ray", False)


def test_example_layout_serves_adapters_from_the_store(generated_tree):
    service, _ = _rayservice("example-ray-cluster", "prod/helm", generated_tree)
    configs = {e["model_loading_config"]["model_id"]: e for e in _llm_configs(service)}
    small, big = configs["llama3.1-8b"], configs["llama3.1-70b"]
    assert small["lora_config"] == {"dynamic_lora_loading_path": "s3://raylabs-adapters/vilms", "max_num_adapters_per_replica": 2}
    assert (small["engine_kwargs"]["enable_lora"], small["engine_kwargs"]["max_lora_rank"], small["engine_kwargs"]["max_loras"]) == (True, 64, 2)
    assert small["deployment_config"]["autoscaling_config"] == {
        "min_replicas": 1, "initial_replicas": 2, "max_replicas": 8, "target_ongoing_requests": 16 + 8}
    assert "lora_config" not in big and big["engine_kwargs"]["tensor_parallel_size"] == 4
    assert small["accelerator_type"] == big["accelerator_type"] == "H100"
    assert small["model_loading_config"]["model_source"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert small["engine_kwargs"]["revision"] == "0e9e39f249a16976918f6564b8830bc894c89659"
    # 70B: a 4-GPU node; 8B: 1..8 one-GPU replicas, packed on 4-GPU nodes: 2 nodes at least, 3 at most
    workers = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert (workers["minReplicas"], workers["replicas"], workers["maxReplicas"]) == (2, 2, 3)
    env = {e["name"]: e for e in service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["env"]}
    assert env[ray_facts.S3_ENV_ENDPOINT]["valueFrom"]["secretKeyRef"]["key"] == "ARTIFACT_STORE_ENDPOINT"
    assert env[ray_facts.S3_ENV_ACCESS_KEY_ID]["valueFrom"]["secretKeyRef"]["key"] == "ARTIFACT_STORE_ACCESS_KEY_ID"
    assert env[ray_facts.S3_ENV_REGION]["value"] == "eu-central-1"


def test_unknown_gpu_type_omits_accelerator_type_and_a_replica_spans_nodes(generated_tree):
    service, _ = _rayservice("fx-helm-ray-pp", "edge/helm", generated_tree)
    configs = {e["model_loading_config"]["model_id"]: e for e in _llm_configs(service)}
    assert all("accelerator_type" not in e for e in configs.values())
    big = configs["llama3.1-70b"]["engine_kwargs"]
    assert (big["tensor_parallel_size"], big["pipeline_parallel_size"]) == (2, 2)
    workers = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert workers["replicas"] == 3  # two whole nodes for the 70B replica, one for the 1.5B
    env = {e["name"]: e for e in workers["template"]["spec"]["containers"][0]["env"]}
    assert env[ray_facts.S3_ENV_ENDPOINT] == {"name": ray_facts.S3_ENV_ENDPOINT, "value": "http://minio.storage.svc:9000"}
    # two gated models with different tokens: each token in the pods under its own name, and each model's
    # HF_TOKEN pointed at its own (Ray expands ${NAME} in runtime_env env_vars)
    for name in ("HF_TOKEN", "LLAMA_TOKEN"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "rayedge-secrets", "key": name}
    assert configs["llama3.1-70b"]["runtime_env"] == {"env_vars": {"HF_TOKEN": "${LLAMA_TOKEN}"}}
    assert "runtime_env" not in configs["qwen2.5-1.5b"]


def test_explain_shows_the_ray_layout(tmp_path):
    _, plan = compile_plan(EXAMPLE, fit=False)
    text = explain_deployment(plan, "prod")
    for line in ("ray: RayService prod-ray (Ray Serve LLM), service prod-ray-serve-svc",
                 "  head group: no GPU (num-gpus 0: no replica lands there)",
                 "  worker group: 2 node(s), autoscaled 2..3 of 4 GPU(s) (h100x4)",
                 "  accelerator_type: H100 (gpu_type NVIDIA-H100-80GB-HBM3 is what Ray detects as H100)",
                 "  llama3.1-8b: replicas 1..8 (start 2), target_ongoing_requests 24, TP 1 x PP 1 (1 GPU(s) per replica)",
                 "  llama3.1-70b: replicas 1, target_ongoing_requests 21, TP 4 x PP 1 (4 GPU(s) per replica)",
                 "    LoRA: <model>:<run_id> loaded on demand from s3://raylabs-adapters/vilms/<run_id>/, 2 adapter(s) per replica"):
        assert line in text.splitlines(), line
    fixture = tmp_path / "vilms.yaml"
    from tests.support.projects import FIXTURES

    fixture.write_text(FIXTURES["fx-helm-ray-pp"], encoding="utf-8")
    _, plan = compile_plan(fixture, fit=False)
    text = explain_deployment(plan, "edge")
    assert "  accelerator_type: - (omitted: gpu_type 'Acme-Tensor-9000' is not in facts.ray.ACCELERATOR_TYPES" in text
    assert "placement:" in text and "llama3.1-70b: tensor parallel 2, pipeline parallel 2" in text


def test_values_schema_refuses_a_head_with_gpus(generated_tree):
    import helm_python

    values = _values("example-ray-cluster", "prod/helm")
    values["ray"]["head"]["rayStartParams"]["num-gpus"] = "1"
    with pytest.raises(helm_python.HelmError):
        helm_render(generated_tree("example-ray-cluster") / "prod/helm", values)


def test_vllm_charts_have_ray_off():
    for project, chart in CHARTS:
        if (project, chart) not in RAY_CHARTS:
            assert _values(project, chart)["ray"] == {"enabled": False}
    assert compiled_in_memory("shipped")  # the shipped project still compiles
