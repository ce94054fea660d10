"""Cluster-serving settings the chart cannot honour are located errors: a rolling update that could
never replace a pod, engine autoscaling without Prometheus or off Kubernetes, monitoring off Helm."""

from __future__ import annotations

import pytest

from tests.compiler.minimal import MINIMAL
from vilms.compiler.pipeline import diagnostics

HELM = "  k8s: {hardware: gpu1, target: helm, engine: vllm}\n"
BASE = MINIMAL.replace("gateway:\n", HELM + "gateway:\n", 1)


def _with(dep_line: str) -> str:
    assert HELM in BASE
    return BASE.replace(HELM, dep_line)


CASES = {
    "update-both-zero": (_with("  k8s: {hardware: gpu1, target: helm, engine: vllm, update: {max_surge: 0, max_unavailable: 0}}\n"),
                         "deployments.k8s.update", "both 0", "max_surge: 0, max_unavailable: 1"),
    "update-surge-zero-default-unavailable": (_with("  k8s: {hardware: gpu1, target: helm, engine: vllm, update: {max_surge: 0}}\n"),
                                              "deployments.k8s.update", "both 0", None),
    "update-on-compose": (BASE.replace("target: compose, engine: vllm}", "target: compose, engine: vllm, update: {max_surge: 2}}"),
                          "deployments.gpu.update", "target helm only", None),
    "monitoring-on-compose": (BASE.replace("target: compose, engine: vllm}", "target: compose, engine: vllm, monitoring: {}}"),
                              "deployments.gpu.monitoring", "target helm only", None),
    "autoscale-without-monitoring": (_with("  k8s: {hardware: gpu1, target: helm, engine: vllm, serving: {qwen2.5-1.5b: {autoscale: {max: 4}}}}\n"),
                                     "deployments.k8s.serving.qwen2.5-1.5b.autoscale", "needs monitoring", "add monitoring: {}"),
    "autoscale-on-compose": (BASE.replace("target: compose, engine: vllm}",
                                          "target: compose, engine: vllm, serving: {qwen2.5-1.5b: {autoscale: {max: 4}}}}"),
                             "deployments.gpu.serving.qwen2.5-1.5b.autoscale", "target helm only", None),
    "autoscale-min-above-max": (_with("  k8s: {hardware: gpu1, target: helm, engine: vllm, monitoring: {}, "
                                      "serving: {qwen2.5-1.5b: {autoscale: {min: 5, max: 4}}}}\n"),
                                "deployments.k8s.serving.qwen2.5-1.5b.autoscale.min", "greater than", None),
    "autoscale-replicas-above-max": (_with("  k8s: {hardware: gpu1, target: helm, engine: vllm, monitoring: {}, replicas: 3, "
                                           "serving: {qwen2.5-1.5b: {autoscale: {max: 2}}}}\n"),
                                     "deployments.k8s.serving.qwen2.5-1.5b.autoscale.max", "below the model's 3 replicas", None),
    "inflight-without-monitoring": (_with("  k8s: {hardware: gpu1, target: helm, engine: vllm, autoscale: {max: 4, inflight: 32}}\n"),
                                    "deployments.k8s.autoscale.inflight", "needs monitoring", None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cluster_setting_is_a_located_error(case, tmp_path):
    text, path, fragment, hint = CASES[case]
    source = tmp_path / "vilms.yaml"
    source.write_text(text, encoding="utf-8")
    found = [d for d in diagnostics(source) if d.path == path]
    assert len(found) == 1, [d.render() for d in diagnostics(source)]
    diag = found[0]
    assert fragment in diag.message and diag.line > 0
    assert text.splitlines()[diag.line - 1].startswith("  k8s:" if "k8s" in path else "  gpu:")
    if hint:
        assert hint in (diag.hint or "")


@pytest.mark.parametrize("dep_line", [
    "  k8s: {hardware: gpu1, target: helm, engine: vllm}\n",
    "  k8s: {hardware: gpu1, target: helm, engine: vllm, update: {max_surge: 0, max_unavailable: 1}}\n",
    "  k8s: {hardware: gpu1, target: helm, engine: vllm, monitoring: {dashboard: false}, autoscale: {max: 4, inflight: 16}, "
    "serving: {qwen2.5-1.5b: {replicas: 2, autoscale: {max: 6, queue: 3, kv_cache: 0.7}}}}\n",
], ids=["plain", "no-spare-gpu", "everything-on"])
def test_workable_cluster_settings_validate(dep_line, tmp_path):
    source = tmp_path / "vilms.yaml"
    source.write_text(_with(dep_line), encoding="utf-8")
    assert [d.render() for d in diagnostics(source)] == []


@pytest.mark.parametrize(("gpus", "nodes", "refused"), [(2, 1, True), (1, 2, True), (1, 1, False)],
                         ids=["two-gpus", "two-nodes", "one-gpu"])
def test_a_trainjob_needs_a_deployment_name_that_starts_with_a_letter(gpus, nodes, refused, tmp_path):
    """Kubeflow Trainer refuses a TrainJob whose name does not start with a letter (RFC 1035); a batch Job
    (one GPU) takes any DNS label."""
    text = _with("  8k: {hardware: gpu1, target: helm, engine: vllm}\n").replace(
        "gpu1: {kind: gpu, gpus: 1,", f"gpu1: {{kind: gpu, gpus: {gpus}, nodes: {nodes},")
    source = tmp_path / "vilms.yaml"
    source.write_text(text, encoding="utf-8")
    found = [d for d in diagnostics(source) if d.path == "deployments.8k"]
    if not refused:
        assert found == []
        return
    assert len(found) == 1, [d.render() for d in diagnostics(source)]
    assert "must start with a letter" in found[0].message and "support-v1" in found[0].message
    assert text.splitlines()[found[0].line - 1].startswith("  8k:")
    assert "k8k" in found[0].hint
