"""An adapter release changes the routes, never an engine's pod template: rendered with Helm, a project
built with the adapter unreleased and then released differs only in the gateway's routes ConfigMap and
the gateway Deployment's checksum of it, so `helm upgrade` rolls the gateway and no vLLM pod restarts."""

from __future__ import annotations

from pathlib import Path

from tests.support.projects import FIXTURES, compiled_tree
from tests.support.validators import helm_render, load_yaml, manifests

RELEASED = "    release: legal-v1-20261104T091500Z-dddddd\n"


def _rendered(tmp: Path, text: str) -> dict[tuple[str, str], dict]:
    compiled_tree(tmp, text)
    chart = tmp / "generated" / "prod" / "helm"
    docs = manifests(helm_render(chart, load_yaml((chart / "values.yaml").read_text()), release="prod"))
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_release_changes_only_the_routes_and_the_gateway_checksum(tmp_path):
    released = FIXTURES["fx-helm-cluster"]
    assert RELEASED in released
    before = _rendered(tmp_path / "unreleased", released.replace(RELEASED, "    release: null\n"))
    after = _rendered(tmp_path / "released", released)

    assert before.keys() == after.keys()
    changed = sorted(key for key in before if before[key] != after[key])
    assert changed == [("ConfigMap", "prod-gateway-routes"), ("Deployment", "prod-gateway")]
    gateway_before, gateway_after = before[("Deployment", "prod-gateway")], after[("Deployment", "prod-gateway")]
    annotation = "vilms.dev/routes-sha256"
    assert (gateway_before["spec"]["template"]["metadata"]["annotations"][annotation]
            != gateway_after["spec"]["template"]["metadata"]["annotations"][annotation])
    del gateway_before["spec"]["template"]["metadata"]["annotations"][annotation]
    del gateway_after["spec"]["template"]["metadata"]["annotations"][annotation]
    assert gateway_before == gateway_after  # nothing else of the gateway changed
    # the engines the release concerns: a LeaderWorkerSet (multi-node) and a Deployment, untouched
    assert {kind for kind, name in before if "-vllm-" in name} >= {"LeaderWorkerSet", "Deployment", "ConfigMap"}
