"""The chart takes every port and container path from values.yaml, which the compiler writes from
compiler/facts; the values schema holds those keys strictly."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from tests.support.projects import compiled_in_memory
from tests.support.validators import helm_render, load_yaml, manifest_problems, manifests
from tests.targets.test_target_helm import CHARTS, IDS, _everything_on, _values
from vilms.compiler.facts import gateway, trainer, vllm

# literals a template must not hold: ports, probe paths, container paths
LITERAL = re.compile(r"\b(8000|8080|11434)\b|/vilms/|/etc/vilms|/health|/readyz|/healthz|/workspace|/model-cache|/hf-cache")

MOVED = {  # values a user could set → where each must show up
    ("vllm", "container"): {"port": 9000, "healthPath": "/ping", "configDir": "/cfg", "configFile": "engine.yaml",
                            "artifactsDir": "/data/artifacts", "cacheDir": "/cache/hf"},
    ("gateway", "container"): {"port": 9090, "configDir": "/gw", "routesFile": "table.yaml",
                               "readyPath": "/ready", "livePath": "/live"},
}


def test_chart_templates_hold_no_ports_or_paths():
    templates = resources.files("vilms.templates").joinpath("helm", "chart", "templates")
    found = [f"{t.name}:{n}: {line.strip()}" for t in templates.iterdir() if t.name.endswith((".yaml", ".tpl", ".txt"))
             for n, line in enumerate(t.read_text(encoding="utf-8").splitlines(), 1) if LITERAL.search(line)]
    assert found == []


@pytest.mark.parametrize(("project", "chart"), CHARTS, ids=IDS)
def test_values_carry_the_facts(project, chart):
    values = _values(project, chart)
    assert values["vllm"]["container"] == {
        "port": vllm.PORT, "healthPath": vllm.HEALTH_PATH, "configDir": vllm.CONFIG_DIR,
        "configFile": vllm.CONFIG_NAME, "artifactsDir": vllm.ARTIFACTS_DIR, "cacheDir": vllm.HF_HOME,
        "multiNodeScript": vllm.MULTI_NODE_SCRIPT}
    assert values["gateway"]["container"] == {
        "port": gateway.PORT, "configDir": gateway.CONFIG_DIR, "routesFile": gateway.ROUTES_NAME,
        "readyPath": gateway.READY_PATH, "livePath": gateway.LIVE_PATH}
    assert values["training"]["workspaceDir"] == trainer.WORKSPACE
    # the engine listens where its Service sends the gateway
    for entry in values["vllm"]["models"]:
        assert entry["config"]["port"] == values["vllm"]["container"]["port"]
    routes = load_yaml(compiled_in_memory(project)[f"{chart.split('/')[0]}/gateway/routes.yaml"])
    for backend in routes["backends"].values():
        assert all(e.endswith(f":{vllm.PORT}") for e in backend["endpoints"])


@pytest.mark.parametrize(("project", "chart"), CHARTS, ids=IDS)
def test_manifests_take_ports_and_paths_from_values(project, chart, generated_tree):
    values = _everything_on(_values(project, chart))
    for (top, key), moved in MOVED.items():
        values[top][key] = moved
    values["training"]["workspaceDir"] = "/proj"
    docs = manifests(helm_render(generated_tree(project) / chart, values, release="rel"))
    assert manifest_problems(docs) == []
    v, g = MOVED[("vllm", "container")], MOVED[("gateway", "container")]
    for doc in docs:
        name, kind = doc["metadata"]["name"], doc["kind"]
        if kind == "Service":
            assert doc["spec"]["ports"][0]["port"] == (values["gateway"]["port"] if name.endswith("-gateway") else v["port"])
        elif kind == "ConfigMap" and "-dashboard-" not in name:
            assert list(doc["data"]) == [g["routesFile"] if name.endswith("-gateway-routes") else v["configFile"]]
        elif kind == "Job":
            pod = doc["spec"]["template"]["spec"]
            assert pod["containers"][0]["args"][-1] == "/proj/vilms.yaml"
            assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/proj"
        elif kind == "TrainJob":
            assert doc["spec"]["trainer"]["args"][-1] == "/proj/vilms.yaml"
            pod = doc["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
            assert pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/proj"
        elif kind == "Deployment":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            probes = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
            if name.endswith("-gateway"):
                assert container["ports"][0]["containerPort"] == g["port"]
                assert container["args"] == ["--routes", "/gw/table.yaml", "--host", "0.0.0.0", "--port", "9090"]
                assert probes == {"/ready", "/live"} and mounts["routes"] == "/gw"
            else:
                assert container["ports"][0]["containerPort"] == v["port"]
                assert container["args"] == ["--config", "/cfg/engine.yaml"]
                assert probes == {container["startupProbe"]["httpGet"]["path"]} == {"/ping"}
                assert {e["name"]: e.get("value") for e in container["env"]}["HF_HOME"] == "/cache/hf"
                assert (mounts["config"], mounts["model-cache"], mounts["artifacts"]) == ("/cfg", "/cache/hf", "/data/artifacts")


@pytest.mark.parametrize("broken", [
    lambda v: v["vllm"]["container"].update(port=None),  # null deletes a key in Helm's merge
    lambda v: v["vllm"]["container"].update(extra=1),
    lambda v: v["vllm"]["container"].update(artifactsDir="relative/path"),
    lambda v: v["gateway"]["container"].update(port=70000),
    lambda v: v["gateway"]["container"].update(routesFile="../routes.yaml"),
    lambda v: v["gateway"].update(container=None),
    lambda v: v["training"].update(workspaceDir=None),
], ids=["missing-port", "unknown-key", "relative-path", "port-range", "file-name", "no-gateway-container", "no-workspace"])
def test_values_schema_holds_the_container_keys_strictly(broken, generated_tree):
    import helm_python

    project, chart = next((p, c) for p, c in CHARTS if p == "shipped")
    values = _values(project, chart)
    broken(values)
    with pytest.raises(helm_python.HelmError):
        helm_render(generated_tree(project) / chart, values)
