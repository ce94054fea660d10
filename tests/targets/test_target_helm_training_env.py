"""A training job on the cluster reads its tracking secrets from the project's Secret: the MLflow server's
URI (``tracking.mlflow.uri: env:NAME``) and the OTLP endpoint and headers (``telemetry.otlp``), in every
kind of training job (Job, TrainJob, RayJob: the head and the workers), read from Helm's own render; no
value, only the variable's name, is in values.yaml."""

from __future__ import annotations

import pytest

from tests.support.projects import FIXTURES, compiled_tree
from tests.support.validators import crd_validate, helm_lint, helm_render, load_yaml, manifest_problems, manifests

TRACKED = FIXTURES["fx-helm-train"].replace(
    "    hardware: h100x4x2\n", "    hardware: h100x4x2\n    tracking: {mlflow: {uri: env:MLFLOW_TRACKING_URI, experiment: support}}\n",
).replace("deployments:", "telemetry:\n  otlp: {endpoint: env:OTEL_ENDPOINT, headers: {authorization: env:OTEL_TOKEN}}\n"
          "deployments:")
RAY = TRACKED.replace("training: {strategy: ddp, max_restarts: 5}", "training: {strategy: ddp, max_restarts: 5, engine: ray}")
WANT = {"MLFLOW_TRACKING_URI", "OTEL_ENDPOINT", "OTEL_TOKEN"}


def _values(tree, chart: str) -> dict:
    values = load_yaml((tree / chart / "values.yaml").read_text(encoding="utf-8"))
    for job in values["training"]["jobs"]:
        job["enabled"] = True
    return values


def _secret_env(container: dict) -> dict[str, tuple[str, str]]:
    return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in container.get("env", [])}


def _expected(names: set[str]) -> dict[str, tuple[str, str]]:
    return {n: ("trainco-secrets", n) for n in names}


@pytest.mark.parametrize("source", [TRACKED, RAY], ids=["torchrun", "ray"])
def test_training_jobs_read_the_mlflow_uri_and_otlp_settings_from_the_secret(source, tmp_path):
    tree = compiled_tree(tmp_path, source)
    seen = []
    for chart in ("big/helm", "small/helm"):
        values = _values(tree, chart)
        docs = manifests(helm_render(tree / chart, values, release="rel"))
        for doc in docs:
            if doc["kind"] == "Job":
                (c,) = doc["spec"]["template"]["spec"]["containers"]
                seen.append(("Job", _secret_env(c)))
            elif doc["kind"] == "TrainJob":
                seen.append(("TrainJob", {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                                          for e in doc["spec"]["trainer"].get("env", [])}))
            elif doc["kind"] == "RayJob":
                spec = doc["spec"]["rayClusterSpec"]
                (head,) = spec["headGroupSpec"]["template"]["spec"]["containers"]
                (group,) = spec["workerGroupSpecs"]
                (worker,) = group["template"]["spec"]["containers"]
                seen += [("RayJob head", _secret_env(head)), ("RayJob worker", _secret_env(worker))]
        assert crd_validate([d for d in docs if d["kind"] in ("TrainJob", "RayJob")]) == []
        assert manifest_problems(docs) == []
        assert helm_lint(tree / chart, values) == []
        text = (tree / chart / "values.yaml").read_text(encoding="utf-8")
        assert "secretKey: MLFLOW_TRACKING_URI" in text or chart == "small/helm"
    kinds = {k for k, _ in seen}
    assert kinds == ({"TrainJob", "Job"} if source is TRACKED else {"RayJob head", "RayJob worker", "Job"})
    for kind, env in seen:
        if kind == "Job":  # support-small: OTLP only, no MLflow server
            assert env == _expected({"OTEL_ENDPOINT", "OTEL_TOKEN"}), kind
        else:
            assert env == _expected(WANT), kind


def test_a_project_without_tracking_secrets_renders_no_training_env(tmp_path):
    tree = compiled_tree(tmp_path, FIXTURES["fx-helm-train"])
    for chart in ("big/helm", "small/helm"):
        assert all("secretEnv" not in job for job in _values(tree, chart)["training"]["jobs"])
