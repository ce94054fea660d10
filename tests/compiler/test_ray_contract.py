"""The Ray contract in vilms.yaml: `engine: ray` (helm, gpu), `artifact_store`, `training.engine`.
What cannot work is a located error with a hint; secrets in the store are references only."""

from __future__ import annotations

import pytest

from tests.compiler.minimal import MINIMAL
from vilms.compiler.pipeline import compile_plan, diagnostics
from vilms.compiler.render.routes import routes as render_routes
from vilms.compiler.render.training import training_config

RAY = "  k8s: {hardware: gpu1, target: helm, engine: ray}\n"
STORE = "artifact_store: {uri: s3://acme-adapters/vilms, endpoint: env:S3_ENDPOINT}\n"
BASE = MINIMAL.replace("gateway:\n", RAY + "gateway:\n", 1)


def _diags(tmp_path, text: str) -> list:
    source = tmp_path / "vilms.yaml"
    source.write_text(text, encoding="utf-8")
    return diagnostics(source)


CASES = {
    "ray-on-cpu": (BASE.replace(RAY, "  k8s: {hardware: laptop, target: helm, engine: ray}\n") + STORE,
                   "deployments.k8s.engine", "runs vLLM on GPU nodes", "gpu profile"),
    "ray-on-compose": (BASE.replace(RAY, "  k8s: {hardware: gpu1, target: compose, engine: ray}\n") + STORE,
                       "deployments.k8s.engine", "cannot run engine 'ray'", "target compose runs"),
    "ray-adapters-without-store": (BASE, "deployments.k8s.engine", "has no artifact_store", "artifact_store: {uri: s3://"),
    "update-on-ray": (BASE.replace(RAY, "  k8s: {hardware: gpu1, target: helm, engine: ray, update: {max_surge: 1}}\n") + STORE,
                      "deployments.k8s.update", "KubeRay rolls", "remove update"),
    "plaintext-secret-key": (BASE + "artifact_store: {uri: s3://b1/p, secret_access_key: wJalrXUtnFEMI}\n",
                             "artifact_store.secret_access_key", "plaintext secret", "env:NAME"),
    "store-not-s3": (BASE + "artifact_store: {uri: 'file:///tmp/adapters'}\n", "artifact_store.uri", "", None),
    "store-endpoint-not-url": (BASE + "artifact_store: {uri: s3://b1, endpoint: 'ftp://x'}\n", "artifact_store.endpoint", "", None),
    "ray-train-on-jetson": (BASE.replace("  laptop: {kind: cpu, memory: 16GiB, cpus: 4}\n",
                                         "  laptop: {kind: cpu, memory: 16GiB, cpus: 4}\n  nano: {kind: jetson, memory: 8GiB, jetpack: '6.2'}\n")
                            .replace("    hardware: gpu1\n", "    hardware: nano\n    training: {engine: ray}\n") + STORE,
                            "adapters.support-v1.training.engine", "Ray Train runs on gpu or cpu", "torchrun"),
    "training-engine-unknown": (BASE.replace("    hardware: gpu1\n", "    hardware: gpu1\n    training: {engine: slurm}\n") + STORE,
                                "adapters.support-v1.training.engine", "", None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_ray_setting_that_cannot_work_is_located(case, tmp_path):
    text, path, fragment, hint = CASES[case]
    found = [d for d in _diags(tmp_path, text) if d.path == path]
    assert len(found) == 1, [d.render() for d in _diags(tmp_path, text)]
    diag = found[0]
    assert fragment in diag.message and diag.line > 0
    if hint:
        assert hint in (diag.hint or "")
    assert "wJalrXUtnFEMI" not in diag.render()


def test_ray_deployment_routes_adapters_through_the_store(tmp_path):
    text = (BASE.replace("    hardware: gpu1\n", "    hardware: gpu1\n    training: {engine: ray}\n")
            .replace("    lora: {r: 16}\n", "    lora: {r: 16}\n    release: support-v1-20261201T000000Z-abcdef\n") + STORE)
    source = tmp_path / "vilms.yaml"
    source.write_text(text, encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "support.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}, '
                                                     '{"role": "assistant", "content": "hello"}]}\n')
    assert [d.render() for d in diagnostics(source)] == []
    _, plan = compile_plan(source)
    routes = render_routes(plan, plan.deployments["k8s"])
    backend = routes.backends["ray"]
    assert (backend.engine, backend.discovery, backend.runtime_lora) == ("ray", None, False)
    assert backend.endpoints == ("http://k8s-ray-serve-svc:8000",)
    route = routes.aliases["support-bot"]
    assert route.model == "qwen2.5-1.5b:support-v1-20261201T000000Z-abcdef"
    assert route.adapter.path == "s3://acme-adapters/vilms/support-v1-20261201T000000Z-abcdef"
    assert routes.aliases["chat"].model == "qwen2.5-1.5b"
    config = training_config(plan, plan.adapters["support-v1"])
    assert config.distributed.engine == "ray"
    store = config.artifact_store
    assert (store.bucket, store.prefix, store.endpoint, store.endpoint_env) == ("acme-adapters", "vilms", None, "S3_ENDPOINT")
    assert (store.access_key_id_env, store.secret_access_key_env, store.region) == ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "us-east-1")
