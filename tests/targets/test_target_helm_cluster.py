"""What the chart does for a cluster, read from Helm's own render of real projects: rolling updates,
startup probes sized to the weights, graceful stops, PDBs that never block a drain, KEDA on vLLM's
queue, monitors, the dashboard, multi-node LeaderWorkerSets, and nothing optional by default."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.projects import FIXTURES, compiled_in_memory
from tests.support.validators import CUSTOM_RESOURCES, crd_validate, helm_render, load_yaml, manifest_problems, manifests
from tests.targets.test_target_helm import CHARTS, IDS, _values
from vilms.compiler.facts import gateway as gateway_facts
from vilms.compiler.facts import vllm as vllm_facts
from vilms.compiler.memory.placement import placements
from vilms.compiler.naming import dns_label
from vilms.compiler.pipeline import compile_plan
from vilms.compiler.render import helm

CLUSTER = ("fx-helm-cluster", "prod/helm")


def _render(project: str, chart: str, generated_tree, values: dict | None = None, namespace: str = "ml") -> list[dict]:
    values = _values(project, chart) if values is None else values
    return manifests(helm_render(generated_tree(project) / chart, values, release="rel", namespace=namespace))


def _by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _source(project: str) -> dict:
    return load_yaml(FIXTURES[project])


@pytest.fixture(scope="module")
def cluster(generated_tree):
    return _render(*CLUSTER, generated_tree)


@pytest.mark.parametrize(("project", "chart"), CHARTS, ids=IDS)
def test_defaults_render_no_custom_resource(project, chart, generated_tree):
    """Without serving autoscale, monitoring or a multi-node model the chart needs no operator
    (engine ray: KubeRay's RayService and nothing else)."""
    if project == CLUSTER[0]:
        return
    docs = _render(project, chart, generated_tree)
    ray = _values(project, chart)["ray"]["enabled"]
    assert [d["kind"] for d in docs if (d["apiVersion"], d["kind"]) in CUSTOM_RESOURCES] == (["RayService"] if ray else [])
    for deployment in _by_kind(docs, "Deployment").values():
        if "-vllm-" in deployment["metadata"]["name"]:
            assert deployment["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_cluster_project_renders_every_optional_kind(cluster):
    kinds = {d["kind"] for d in cluster}
    assert {"LeaderWorkerSet", "ScaledObject", "PodMonitor", "ServiceMonitor", "HorizontalPodAutoscaler"} <= kinds
    assert manifest_problems(cluster) == []


def test_rolling_update_follows_update_settings(cluster):
    update = _source("fx-helm-cluster")["deployments"]["prod"]["update"]
    engines = [d for d in cluster if d["kind"] in ("Deployment", "LeaderWorkerSet") and "-vllm-" in d["metadata"]["name"]]
    assert len(engines) == 2
    for engine in engines:
        strategy = engine["spec"].get("strategy") or engine["spec"]["rolloutStrategy"]
        rolling = strategy.get("rollingUpdate") or strategy["rollingUpdateConfiguration"]
        assert strategy["type"] == "RollingUpdate"
        assert rolling == {"maxSurge": update["max_surge"], "maxUnavailable": update["max_unavailable"]}


def test_startup_probe_allows_a_cold_load_of_the_weights(cluster):
    allowed = {}
    for owner, container in _engine_containers(cluster):
        probe = container["startupProbe"]
        allowed[owner] = probe["periodSeconds"] * probe["failureThreshold"]
    big, small = allowed["prod-vllm-llama3-1-70b"], allowed["prod-vllm-qwen2-5-0-5b"]
    weights_70b = 70e9 * 2  # bfloat16
    assert big >= weights_70b / vllm_facts.LOAD_BYTES_PER_S + vllm_facts.ENGINE_START_S
    assert small >= vllm_facts.ENGINE_START_S and small < big
    assert big < weights_70b / vllm_facts.LOAD_BYTES_PER_S * 1.5 + vllm_facts.ENGINE_START_S + vllm_facts.STARTUP_PROBE_PERIOD_S


def test_engines_stop_gracefully_after_the_gateway_stopped_sending(cluster):
    gateway = _source("fx-helm-cluster")["gateway"]
    for spec, container in _engine_pods(cluster):
        sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
        assert sleep > gateway["discovery_interval"]  # every gateway has re-resolved the headless Service
        assert spec["terminationGracePeriodSeconds"] >= sleep + 900  # + the gateway's default request_timeout


def test_a_pdb_per_model_never_blocks_a_drain(generated_tree):
    for project, chart in CHARTS:
        docs = _render(project, chart, generated_tree)
        pdbs = _by_kind(docs, "PodDisruptionBudget")
        for name in {d["metadata"]["name"] for d in docs if d["kind"] in ("Deployment", "LeaderWorkerSet") and "-vllm-" in d["metadata"]["name"]}:
            # maxUnavailable ≥ 1 lets the eviction API take a pod even when it is a model's only replica
            assert pdbs[name]["spec"] == {**pdbs[name]["spec"], "maxUnavailable": 1} and "minAvailable" not in pdbs[name]["spec"]


def test_keda_scales_on_vllm_queue_and_kv_cache(cluster):
    source = _source("fx-helm-cluster")["deployments"]["prod"]
    spec = source["serving"]["qwen2.5-0.5b"]["autoscale"]
    scaled = _by_kind(cluster, "ScaledObject")
    assert list(scaled) == ["prod-vllm-qwen2-5-0-5b"]  # only the autoscaled model
    obj = scaled["prod-vllm-qwen2-5-0-5b"]["spec"]
    assert obj["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "prod-vllm-qwen2-5-0-5b"}
    assert (obj["minReplicaCount"], obj["maxReplicaCount"]) == (spec["min"], spec["max"])
    assert "replicas" not in _by_kind(cluster, "Deployment")["prod-vllm-qwen2-5-0-5b"]["spec"]  # KEDA owns it
    assert _by_kind(cluster, "LeaderWorkerSet")["prod-vllm-llama3-1-70b"]["spec"]["replicas"] == 1
    triggers = {t["name"]: t for t in obj["triggers"]}
    for trigger in triggers.values():
        assert trigger["type"] == "prometheus"
        assert trigger["metadata"]["serverAddress"] == source["monitoring"]["prometheus_url"]
    queue, kv = triggers["queue"], triggers["kv-cache"]
    assert queue["metricType"] == "AverageValue" and float(queue["metadata"]["threshold"]) == spec["queue"]
    assert kv["metricType"] == "Value" and float(kv["metadata"]["threshold"]) == spec["kv_cache"]
    assert queue["metadata"]["query"].startswith(f"sum({vllm_facts.METRIC_WAITING}{{")
    assert kv["metadata"]["query"].startswith(f"avg({vllm_facts.METRIC_KV_CACHE}{{")
    # the series carry the labels the PodMonitor copies from the pods (Prometheus sanitises the names)
    monitor = next(iter(_by_kind(cluster, "PodMonitor").values()))["spec"]
    wanted = {re.sub(r"[^a-zA-Z0-9_]", "_", label) for label in monitor["podTargetLabels"]}
    used = set(re.findall(r"(\w+)=", queue["metadata"]["query"]))
    assert used == wanted | {"namespace"}
    assert 'namespace="ml"' in queue["metadata"]["query"] and 'app_kubernetes_io_component="vllm-qwen2-5-0-5b"' in queue["metadata"]["query"]


def test_monitors_scrape_vllm_and_the_gateway_with_the_ops_key(cluster):
    pod_monitor = next(iter(_by_kind(cluster, "PodMonitor").values()))["spec"]
    assert pod_monitor["podMetricsEndpoints"] == [{"port": "http", "path": vllm_facts.METRICS_PATH}]
    assert set(pod_monitor["selector"]["matchExpressions"][0]["values"]) == {"vllm-llama3-1-70b", "vllm-qwen2-5-0-5b"}
    service_monitor = next(iter(_by_kind(cluster, "ServiceMonitor").values()))["spec"]
    gateway_service = _by_kind(cluster, "Service")["prod-gateway"]
    assert service_monitor["selector"]["matchLabels"] == gateway_service["spec"]["selector"]
    assert service_monitor["endpoints"] == [{"port": "http", "path": gateway_facts.METRICS_PATH, "authorization": {
        "type": "Bearer", "credentials": {"name": "megacorp-secrets", "key": "MEGACORP_OPS_KEY"}}}]
    # the gateway reads the same secret key as its ops key
    gateway = _by_kind(cluster, "Deployment")["prod-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "MEGACORP_OPS_KEY", "valueFrom": {"secretKeyRef": {"name": "megacorp-secrets", "key": "MEGACORP_OPS_KEY"}}} in gateway["env"]


def test_gateway_hpa_scales_on_in_flight_requests(cluster):
    hpa = _by_kind(cluster, "HorizontalPodAutoscaler")["prod-gateway"]["spec"]
    pods = [m for m in hpa["metrics"] if m["type"] == "Pods"]
    assert pods == [{"type": "Pods", "pods": {"metric": {"name": gateway_facts.METRIC_IN_FLIGHT},
                                              "target": {"type": "AverageValue", "averageValue": "64"}}}]
    assert any(m["type"] == "Resource" for m in hpa["metrics"])


def test_each_dashboard_is_its_own_configmap_with_the_charts_json(cluster):
    """Grafana's sidecar picks up every ConfigMap labelled grafana_dashboard; each carries one dashboard
    file of the chart byte for byte (the queries are checked in tests/targets/test_dashboards.py)."""
    dashboards = {c["metadata"]["name"]: c["data"] for c in _by_kind(cluster, "ConfigMap").values()
                  if c["metadata"]["labels"].get("grafana_dashboard") == "1"}
    chart = helm.chart_files()
    expected = {"gateway", "training", "vllm"}  # the cluster fixture trains adapters and serves with vLLM
    assert dashboards == {f"prod-dashboard-{name}": {f"vilms-{name}.json": chart[f"{helm.DASHBOARDS_DIR}/{name}.json"].decode()}
                          for name in expected}


def test_dashboards_follow_their_toggles(generated_tree):
    project, chart = CLUSTER
    values = _values(project, chart)
    values["monitoring"]["dashboards"].update(vllm=False, training=False)
    docs = _render(project, chart, generated_tree, values)
    names = {c["metadata"]["name"] for c in _by_kind(docs, "ConfigMap").values() if c["metadata"]["labels"].get("grafana_dashboard")}
    assert names == {"prod-dashboard-gateway"}
    values["monitoring"]["dashboards"]["gateway"] = False
    docs = _render(project, chart, generated_tree, values)
    assert not [c for c in _by_kind(docs, "ConfigMap").values() if c["metadata"]["labels"].get("grafana_dashboard")]


@pytest.mark.parametrize("dashboards", [{"gateway": True, "training": True, "vllm": True, "grafana": True},
                                        {"gateway": "yes", "training": True, "vllm": True}])
def test_values_schema_refuses_unknown_dashboards_and_non_boolean_toggles(dashboards, generated_tree):
    """A dashboard the chart does not ship, a toggle that is not a boolean (toggles left out keep the
    chart's values.yaml defaults: Helm merges maps)."""
    import helm_python

    values = _values(*CLUSTER)
    values["monitoring"]["dashboards"] = dashboards
    with pytest.raises(helm_python.HelmError):
        helm_render(generated_tree(CLUSTER[0]) / CLUSTER[1], values)


def test_a_model_spanning_nodes_is_a_leaderworkerset(cluster):
    lws = _by_kind(cluster, "LeaderWorkerSet")["prod-vllm-llama3-1-70b"]["spec"]
    serving = _source("fx-helm-cluster")["deployments"]["prod"]["serving"]["llama3.1-70b"]
    tp, pp = serving["tensor_parallel"], serving["pipeline_parallel"]
    template = lws["leaderWorkerTemplate"]
    assert template["size"] == pp and template["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader = template["leaderTemplate"]["spec"]["containers"][0]
    worker = template["workerTemplate"]["spec"]["containers"][0]
    assert f"--tensor-parallel-size {tp} --pipeline-parallel-size {pp}" in leader["args"][0]
    assert leader["args"][0].startswith(f"bash {vllm_facts.MULTI_NODE_SCRIPT} leader --ray_cluster_size=${{LWS_GROUP_SIZE}} && ")
    assert worker["args"] == [f"exec bash {vllm_facts.MULTI_NODE_SCRIPT} worker --ray_address=${{LWS_LEADER_ADDRESS}}"]
    for container in (leader, worker):
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == tp  # one node's GPUs per pod
    assert "ports" not in worker and "readinessProbe" not in worker
    service = _by_kind(cluster, "Service")["prod-vllm-llama3-1-70b"]["spec"]
    assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is False
    assert service["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"  # one endpoint per group
    # the routes table discovers the engines through that Service
    routes = load_yaml(compiled_in_memory("fx-helm-cluster")["prod/gateway/routes.yaml"])
    assert routes["backends"]["vllm-llama3.1-70b"]["discovery"]["host"] == "prod-vllm-llama3-1-70b"


def test_gpus_per_pod_and_replicas_come_from_placement(cluster, tmp_path):
    source = tmp_path / "vilms.yaml"
    source.write_text(FIXTURES["fx-helm-cluster"], encoding="utf-8")
    _doc, plan = compile_plan(source)
    placed = placements(plan, plan.deployments["prod"])
    engines = {d["metadata"]["name"]: d for d in cluster if d["kind"] in ("Deployment", "LeaderWorkerSet") and "-vllm-" in d["metadata"]["name"]}
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d["spec"] for d in cluster if d["kind"] == "ScaledObject"}
    assert placed["qwen2.5-0.5b"].gpus_per_node < plan.deployments["prod"].hardware.gpus  # the planner's choice, not every GPU
    for model, place in placed.items():
        name = f"prod-vllm-{dns_label(model)}"
        engine = engines[name]
        if place.nodes > 1:
            assert engine["kind"] == "LeaderWorkerSet" and engine["spec"]["leaderWorkerTemplate"]["size"] == place.nodes
            pods = [engine["spec"]["leaderWorkerTemplate"][t]["spec"] for t in ("leaderTemplate", "workerTemplate")]
        else:
            assert engine["kind"] == "Deployment"
            pods = [engine["spec"]["template"]["spec"]]
        for pod in pods:
            assert int(pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) == place.gpus_per_node
        replicas = engine["spec"].get("replicas", scaled.get(name, {}).get("minReplicaCount"))
        assert replicas == (place.replicas if name not in scaled else _source("fx-helm-cluster")["deployments"]["prod"]
                            ["serving"][model]["autoscale"]["min"])


def test_crd_validation_rejects_broken_custom_resources(cluster):
    scaled = next(d for d in cluster if d["kind"] == "ScaledObject")
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["triggers"][0]["metadata"]["threshold"] = 4  # KEDA wants strings
    broken["spec"]["minReplicaCount"] = "one"
    assert len(crd_validate([broken])) >= 2
    lws = json.loads(json.dumps(next(d for d in cluster if d["kind"] == "LeaderWorkerSet")))
    lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    assert crd_validate([lws])
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}
    assert manifest_problems([unknown]) == ["Widget/w: no schema for example.com/v1 Widget"]
    assert manifest_problems([{"apiVersion": "v1", "kind": "Gizmo", "metadata": {"name": "g"}}])  # no built-in schema either


def _engine_pods(docs):
    for doc in docs:
        if doc["kind"] == "Deployment" and "-vllm-" in doc["metadata"]["name"]:
            spec = doc["spec"]["template"]["spec"]
            yield spec, spec["containers"][0]
        elif doc["kind"] == "LeaderWorkerSet":
            spec = doc["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
            yield spec, spec["containers"][0]


def _engine_containers(docs):
    names = [d["metadata"]["name"] for d in docs if d["kind"] in ("Deployment", "LeaderWorkerSet") and "-vllm-" in d["metadata"]["name"]]
    return list(zip(names, [c for _, c in _engine_pods(docs)], strict=True))




def test_engine_autoscaling_without_monitoring_is_refused_by_the_chart(generated_tree):
    import helm_python

    values = _values(*CLUSTER)
    values["monitoring"]["enabled"] = False
    with pytest.raises(helm_python.HelmError, match="needs monitoring.enabled"):
        helm_render(generated_tree(CLUSTER[0]) / CLUSTER[1], values)


@pytest.mark.parametrize(("project", "chart"), CHARTS, ids=IDS)
def test_engine_parallelism_matches_the_gpus_it_requests(project, chart, generated_tree):
    """vLLM's config asks for tensor × pipeline parallel GPUs; the pods of one replica request exactly that."""
    for entry in _values(project, chart)["vllm"]["models"]:
        config = entry["config"]
        tp = config.get("tensor-parallel-size", 1)
        pp = config.get("pipeline-parallel-size", 1)
        assert (tp, pp) == (entry["tensorParallel"], entry["pipelineParallel"]), entry["name"]
        assert entry["resources"]["limits"]["nvidia.com/gpu"] * entry["nodes"] == tp * pp, entry["name"]
