"""The generated Helm chart renders and lints (strict) with Helm's own engine, and every rendered
manifest passes its validator (kubernetes-validate --strict for built-in kinds, the CRD's strict
schema for custom resources), with the generated values and with every optional feature switched on
(ingress, gateway and engine autoscaling, monitoring and dashboard, multi-node, training Jobs,
existing claims, secrets)."""

from __future__ import annotations

import copy

import pytest

from tests.support.projects import artefacts, compiled_in_memory
from tests.support.validators import helm_lint, helm_render, load_yaml, manifest_problems, manifests

CHARTS = [(p, r.rsplit("/", 1)[0]) for p, r in artefacts(lambda rel: rel.endswith("/helm/values.yaml"))]
IDS = [f"{p}:{c}" for p, c in CHARTS]


def _engine_ray(project: str, chart: str) -> bool:
    return bool(load_yaml(compiled_in_memory(project)[f"{chart}/values.yaml"])["ray"]["enabled"])


# charts of vLLM deployments (engine ray: tests/targets/test_target_helm_ray.py)
VLLM_CHARTS = [(p, c) for p, c in CHARTS if not _engine_ray(p, c)]
VLLM_IDS = [f"{p}:{c}" for p, c in VLLM_CHARTS]


def pod_templates(docs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(owner, labels, pod spec) of every pod template: Deployments and Jobs, and a LeaderWorkerSet's
    leader and worker (with the worker-index label the LWS controller adds: 0 for the leader)."""
    out = []
    for doc in docs:
        name = doc["metadata"]["name"]
        if doc["kind"] in ("Deployment", "Job"):
            out.append((name, doc["spec"]["template"]["metadata"]["labels"], doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "LeaderWorkerSet":
            lwt = doc["spec"]["leaderWorkerTemplate"]
            for role, index in (("leaderTemplate", "0"), ("workerTemplate", "1")):
                labels = {**lwt[role]["metadata"]["labels"], "leaderworkerset.sigs.k8s.io/worker-index": index}
                out.append((name, labels, lwt[role]["spec"]))
    return out


def _values(project: str, chart: str) -> dict:
    return load_yaml(compiled_in_memory(project)[f"{chart}/values.yaml"])


def _everything_on(values: dict) -> dict:
    v = copy.deepcopy(values)
    v["ingress"] = {"enabled": True, "host": "llm.example.com", "className": "nginx", "tlsSecret": "llm-tls"}
    v["gateway"]["autoscaling"]["enabled"] = True
    v["modelCache"]["existingClaim"] = "model-cache"
    v["artifacts"]["existingClaim"] = "vilms-artifacts"
    for job in v["training"]["jobs"]:
        job["enabled"] = True
    kinds = {job["kind"] for job in v["training"]["jobs"]}
    if "Job" not in kinds:
        v["training"]["jobs"].append({"name": "extra", "adapter": "extra", "enabled": True, "kind": "Job",
                                      "resources": {"limits": {"nvidia.com/gpu": 1}}})
    if "TrainJob" not in kinds:  # an adapter on two nodes of four GPUs
        v["training"]["jobs"].append({"name": "extra-multi", "adapter": "extra-multi", "enabled": True, "kind": "TrainJob",
                                      "revision": "0123abcd", "numNodes": 2, "numProcPerNode": 4, "maxRestarts": 3,
                                      "shmSize": "2Gi", "resources": {"limits": {"nvidia.com/gpu": 4}}})
    v["gateway"]["autoscaling"]["inFlightPerPod"] = 32
    v["monitoring"].update(enabled=True, dashboards={"gateway": True, "training": True, "vllm": True}, prometheusUrl="http://prometheus.monitoring.svc:9090",
                           labels={"release": "kube-prometheus-stack"},
                           gatewayAuth={"secretName": f"{v['project']}-secrets", "secretKey": "OPS_KEY"})
    for model in v["vllm"]["models"]:
        model["autoscaling"].update(enabled=True, minReplicas=1, maxReplicas=6)
    models = v["vllm"]["models"]
    if models:  # engine ray renders no vLLM model
        models[0]["nodes"] = 2  # the first model spans two nodes (a LeaderWorkerSet); the rest stay Deployments
    return v


SCENARIOS = {"generated": lambda v: v, "everything-on": _everything_on}


def test_a_chart_is_covered():
    assert any(p == "shipped" for p, _ in CHARTS)
    assert any(p == "fx-helm-full" for p, _ in CHARTS)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize(("project", "chart"), CHARTS, ids=IDS)
def test_helm_lint_strict_is_clean(project, chart, scenario, generated_tree):
    values = SCENARIOS[scenario](_values(project, chart))
    assert helm_lint(generated_tree(project) / chart, values) == []


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize(("project", "chart"), CHARTS, ids=IDS)
def test_rendered_manifests_pass_kubernetes_validate_strict(project, chart, scenario, generated_tree):
    values = SCENARIOS[scenario](_values(project, chart))
    docs = manifests(helm_render(generated_tree(project) / chart, values, release=project[:20]))
    assert docs
    assert manifest_problems(docs) == []


@pytest.mark.parametrize(("project", "chart"), VLLM_CHARTS, ids=VLLM_IDS)
def test_chart_is_what_an_expert_writes(project, chart, generated_tree):
    root = generated_tree(project) / chart
    chart_meta = load_yaml((root / "Chart.yaml").read_text())
    assert chart_meta["apiVersion"] == "v2"
    assert (root / "values.schema.json").is_file()
    assert (root / "templates" / "_helpers.tpl").is_file()

    values = _everything_on(_values(project, chart))
    docs = manifests(helm_render(root, values, release="rel"))
    kinds = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
        labels = doc["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
                    "app.kubernetes.io/component", "helm.sh/chart"):
            assert key in labels, (doc["kind"], doc["metadata"]["name"], key)
    for kind in ("Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress", "Job",
                 "TrainJob", "LeaderWorkerSet", "ScaledObject", "PodMonitor", "ServiceMonitor"):
        assert kind in kinds, kind

    pods = {d["metadata"]["name"]: d for d in kinds["Deployment"]}
    templates = pod_templates(docs)
    # Services, PDBs and monitors select pods that exist
    for selector_owner in kinds["Service"] + kinds["PodDisruptionBudget"] + kinds["PodMonitor"]:
        spec = selector_owner["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert any(selector.items() <= labels.items() for _, labels, _ in templates), selector_owner["metadata"]["name"]
    for deployment in pods.values():
        assert deployment["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    hpa = kinds["HorizontalPodAutoscaler"][0]
    assert hpa["spec"]["scaleTargetRef"]["name"] in pods
    assert "replicas" not in pods[hpa["spec"]["scaleTargetRef"]["name"]]["spec"]  # the HPA owns it
    assert {"type": "Pods", "pods": {"metric": {"name": "vilms_gateway_in_flight"},
                                     "target": {"type": "AverageValue", "averageValue": "32"}}} in hpa["spec"]["metrics"]

    engines = {d["metadata"]["name"]: d for d in kinds["Deployment"] + kinds["LeaderWorkerSet"] if "-vllm-" in d["metadata"]["name"]}
    assert len(engines) == len(values["vllm"]["models"])
    assert [d["kind"] for d in engines.values()].count("LeaderWorkerSet") == 1
    for scaled in kinds["ScaledObject"]:  # KEDA owns the replica count of what it scales
        target = scaled["spec"]["scaleTargetRef"]
        assert engines[target["name"]]["kind"] == target["kind"] and "replicas" not in engines[target["name"]]["spec"]
    assert {s["spec"]["scaleTargetRef"]["name"] for s in kinds["ScaledObject"]} == set(engines)
    for owner, _labels, pod in templates:
        if owner not in engines:
            continue
        container = pod["containers"][0]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        if container["name"] != "vllm-worker":
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["path"] == "/health"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "model-cache"
        assert any(m["name"] == "model-cache" for m in container["volumeMounts"])
    gateway = next(d for n, d in pods.items() if n.endswith("-gateway"))
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert probe in container
    # secrets only by reference
    secret_env = values["gateway"]["secretEnv"]
    env = {e["name"]: e for e in container.get("env", [])}
    for ref in secret_env:
        assert env[ref["name"]]["valueFrom"]["secretKeyRef"] == {"name": ref["secretName"], "key": ref["secretKey"]}
    # the routes ConfigMap is the gateway's routes.yaml, byte for byte in meaning
    dep_name = chart.split("/")[0]
    routes = load_yaml(compiled_in_memory(project)[f"{dep_name}/gateway/routes.yaml"])
    cm = next(c for c in kinds["ConfigMap"] if c["metadata"]["name"].endswith("-gateway-routes"))
    assert load_yaml(cm["data"]["routes.yaml"]) == routes
    ingress = kinds["Ingress"][0]
    assert ingress["spec"]["tls"][0]["secretName"] == "llm-tls"
    for job in kinds["Job"]:
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] in ("Never", "OnFailure")
        assert "ttlSecondsAfterFinished" not in job["spec"]  # GitOps would re-create (re-run) a reaped Job
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        assert len(job["metadata"]["name"]) <= 63
    pdbs = {p["metadata"]["name"] for p in kinds["PodDisruptionBudget"]}
    assert set(engines) <= pdbs  # one per model, whatever its replica count


@pytest.mark.parametrize(("project", "chart"), VLLM_CHARTS, ids=VLLM_IDS)
def test_served_adapters_are_mounted_from_the_training_workspace(project, chart, generated_tree):
    values = _values(project, chart)
    docs = manifests(helm_render(generated_tree(project) / chart, values))
    configs = [load_yaml(c["data"]["vllm.yaml"]) for c in docs if c["kind"] == "ConfigMap" and "vllm.yaml" in c.get("data", {})]
    if not any(c.get("enable-lora") for c in configs):
        assert values["artifacts"] == {}
        return
    assert values["artifacts"] == {"existingClaim": values["training"]["workspaceClaim"], "subPath": "artifacts"}
    for d in docs:
        if d["kind"] == "Deployment" and "-vllm-" in d["metadata"]["name"]:
            pod = d["spec"]["template"]["spec"]
            volume = next(v for v in pod["volumes"] if v["name"] == "artifacts")
            assert volume["persistentVolumeClaim"] == {"claimName": values["training"]["workspaceClaim"], "readOnly": True}
            mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "artifacts")
            assert mount["subPath"] == "artifacts" and mount["readOnly"] is True


@pytest.mark.parametrize(("project", "chart"), VLLM_CHARTS, ids=VLLM_IDS)
def test_vllm_configmaps_are_the_generated_vllm_configs(project, chart, generated_tree):
    values = _values(project, chart)
    dep_name = chart.split("/")[0]
    docs = manifests(helm_render(generated_tree(project) / chart, values))
    files = compiled_in_memory(project)
    configs = {load_yaml(c["data"]["vllm.yaml"])["served-model-name"][0]: load_yaml(c["data"]["vllm.yaml"])
               for c in docs if c["kind"] == "ConfigMap" and "vllm.yaml" in c.get("data", {})}
    assert configs
    for model, config in configs.items():
        assert config == load_yaml(files[f"{dep_name}/vllm/{model}.yaml"])


@pytest.mark.parametrize(("project", "chart"), CHARTS, ids=IDS)
def test_values_schema_rejects_bad_values(project, chart, generated_tree):
    import helm_python

    values = _values(project, chart)
    values["gateway"]["port"] = "eighty"
    with pytest.raises(helm_python.HelmError):
        helm_render(generated_tree(project) / chart, values)
