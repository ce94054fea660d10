"""`telemetry.otlp` and `tracking.mlflow` in vilms.yaml: what cannot work is a located error with a
hint, secrets stay references (never in a message, never in generated/), and what resolves reaches
the gateway's routes, every training config and the deployments' environments."""

from __future__ import annotations

import pytest

from tests.compiler.minimal import MINIMAL
from vilms.compiler.pipeline import compile_plan, diagnostics
from vilms.compiler.render.routes import routes as render_routes
from vilms.compiler.render.training import training_config

TRACKED = MINIMAL.replace("    hardware: gpu1\n", "    hardware: gpu1\n    tracking: {mlflow: {uri: env:MLFLOW_URI, experiment: acme-ft}}\n", 1)
OTLP = "telemetry:\n  otlp: {endpoint: env:OTLP_URL, headers: {authorization: env:OTLP_AUTH}, interval: 30}\n"


def _diags(tmp_path, text: str) -> list:
    source = tmp_path / "vilms.yaml"
    source.write_text(text, encoding="utf-8")
    return diagnostics(source)


CASES = {
    "header-plaintext": (MINIMAL + "telemetry:\n  otlp: {endpoint: 'http://c:4318', headers: {authorization: Bearer-s3cr3tvalue}}\n",
                         "telemetry.otlp.headers.authorization", "plaintext secret", "env:NAME"),
    "header-bad-env": (MINIMAL + "telemetry:\n  otlp: {endpoint: 'http://c:4318', headers: {x-key: 'env:lower'}}\n",
                       "telemetry.otlp.headers.x-key", "invalid environment variable name", "env:NAME"),
    "endpoint-with-credentials": (MINIMAL + "telemetry:\n  otlp: {endpoint: 'https://u:s3cr3tvalue@c:4318'}\n",
                                  "telemetry.otlp.endpoint", "", None),
    "endpoint-not-url": (MINIMAL + "telemetry:\n  otlp: {endpoint: 'grpc://c:4317'}\n", "telemetry.otlp.endpoint", "", None),
    "interval-nan": (MINIMAL + "telemetry:\n  otlp: {endpoint: 'http://c:4318', interval: .nan}\n", "telemetry.otlp.interval", "", None),
    "interval-zero": (MINIMAL + "telemetry:\n  otlp: {endpoint: 'http://c:4318', interval: 0}\n", "telemetry.otlp.interval", "", None),
    "interval-huge": (MINIMAL + "telemetry:\n  otlp: {endpoint: 'http://c:4318', interval: 1e300}\n", "telemetry.otlp.interval", "", None),
    "interval-string": (MINIMAL + "telemetry:\n  otlp: {endpoint: 'http://c:4318', interval: 15s}\n", "telemetry.otlp.interval", "", None),
    "otlp-without-endpoint": (MINIMAL + "telemetry:\n  otlp: {interval: 10}\n", "telemetry.otlp", "endpoint", None),
    "otel-endpoint-moved": (MINIMAL.replace("gateway:\n", "gateway:\n  otel_endpoint: env:OTEL_EXPORTER_OTLP_ENDPOINT\n"),
                            "gateway.otel_endpoint", "has moved", "telemetry.otlp.endpoint"),
    "mlflow-uri-credentials": (MINIMAL.replace("    hardware: gpu1\n", "    hardware: gpu1\n    tracking: {mlflow: {uri: 'https://u:s3cr3tvalue@mlflow'}}\n"),
                               "adapters.support-v1.tracking.mlflow", "", None),
    "mlflow-alias-bad": (MINIMAL.replace("    hardware: gpu1\n", "    hardware: gpu1\n    tracking: {mlflow: {uri: 'http://mlflow:5000', alias: 'Prod Now'}}\n"),
                         "adapters.support-v1.tracking.mlflow", "", None),
    "experiment-twice": (TRACKED.replace("tracking: {mlflow:", "tracking: {experiment: other, mlflow:"),
                         "adapters.support-v1.tracking.experiment", "given twice", "tracking.mlflow.experiment"),
    "experiment-without-mlflow": (MINIMAL.replace("    hardware: gpu1\n", "    hardware: gpu1\n    tracking: {experiment: acme}\n"),
                                  "adapters.support-v1.tracking.experiment", "without MLflow", "mlflow: true"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_telemetry_setting_that_cannot_work_is_located(case, tmp_path):
    text, path, fragment, hint = CASES[case]
    diags = _diags(tmp_path, text)
    found = [d for d in diags if d.path == path or d.path.startswith(path + ".")]
    assert found, [d.render() for d in diags]
    diag = found[0]
    assert fragment in diag.message and diag.line > 0
    if hint:
        assert hint in (diag.hint or "")
    assert all("s3cr3tvalue" not in d.render() for d in diags)


def _plan(tmp_path, text: str):
    source = tmp_path / "vilms.yaml"
    source.write_text(text, encoding="utf-8")
    return compile_plan(source)


def test_telemetry_and_tracking_reach_routes_and_training_configs(tmp_path):
    _, plan = _plan(tmp_path, TRACKED + OTLP)
    spec = plan.telemetry
    assert (spec.endpoint, spec.endpoint_env, dict(spec.headers_env), spec.interval_s) == (None, "OTLP_URL", {"authorization": "OTLP_AUTH"}, 30.0)
    assert spec.env_names == ("OTLP_AUTH", "OTLP_URL")
    env = {"OTLP_URL": "http://collector:4318/", "OTLP_AUTH": "Bearer t"}
    assert spec.metrics_url(env) == "http://collector:4318/v1/metrics"
    assert spec.traces_url(env) == "http://collector:4318/v1/traces"
    assert spec.headers(env) == {"authorization": "Bearer t"} and spec.headers({}) == {}
    assert spec.metrics_url({}) is None
    routes = render_routes(plan, plan.deployments["gpu"])
    assert routes.gateway.telemetry == spec
    config = training_config(plan, plan.adapters["support-v1"])
    assert config.telemetry == spec
    mlflow = config.tracking.mlflow
    assert (mlflow.tracking_uri, mlflow.tracking_uri_env, mlflow.experiment, mlflow.registered_model, mlflow.registry_alias) == \
        (None, "MLFLOW_URI", "acme-ft", "support-v1", "production")


def test_mlflow_true_keeps_the_local_store(tmp_path):
    _, plan = _plan(tmp_path, MINIMAL.replace("    hardware: gpu1\n", "    hardware: gpu1\n    tracking: {mlflow: true, experiment: e1}\n"))
    mlflow = plan.adapters["support-v1"].mlflow
    assert (mlflow.tracking_uri, mlflow.experiment) == ("file:mlruns", "e1")
    assert _plan(tmp_path, MINIMAL)[1].adapters["support-v1"].mlflow is None


def test_compose_passes_the_exporter_variables_by_reference_only(tmp_path):
    from vilms.compiler.pipeline import build

    source = tmp_path / "vilms.yaml"
    source.write_text(TRACKED + OTLP, encoding="utf-8")
    build(source)
    compose = (tmp_path / "generated" / "gpu" / "docker-compose.yaml").read_text(encoding="utf-8")
    assert "OTLP_URL: ${OTLP_URL:-}" in compose and "OTLP_AUTH: ${OTLP_AUTH:-}" in compose
