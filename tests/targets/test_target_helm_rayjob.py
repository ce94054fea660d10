"""Training on Ray on the cluster, read from Helm's own render: an adapter with training.engine ray trains as a
KubeRay RayJob — its own Ray cluster (a head without GPUs, one worker pod per node of the profile with its GPUs,
the workspace on every pod), the entrypoint `vilms train --ray auto --resume`; every RayJob validates strictly
against KubeRay's CRD schema (tests/crds/rayjob_v1.json), the chart lints strictly and the rest passes
kubernetes-validate."""

from __future__ import annotations

import copy
import re
import shlex

import pytest

from tests.support.projects import FIXTURES, compiled_tree
from tests.support.validators import crd_validate, helm_lint, helm_render, load_yaml, manifest_problems, manifests
from vilms.compiler.facts import ray, trainer

SOURCE = (FIXTURES["fx-helm-train"]
          .replace("training: {strategy: ddp, max_restarts: 5}", "training: {strategy: ddp, max_restarts: 5, engine: ray}")
          .replace("training: {batch_size: 1, seq_len: 1024}", "training: {batch_size: 1, seq_len: 1024, engine: ray}"))
BIG, SMALL = "big/helm", "small/helm"  # 2 nodes × 4 H100; 1 L4
RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return compiled_tree(tmp_path_factory.mktemp("rayjob"), SOURCE)


def _values(tree, chart: str, enabled: bool = True) -> dict:
    values = load_yaml((tree / chart / "values.yaml").read_text(encoding="utf-8"))
    for job in values["training"]["jobs"]:
        job["enabled"] = enabled
    return values


def _rayjobs(tree, chart: str, values: dict | None = None) -> tuple[list[dict], list[dict]]:
    docs = manifests(helm_render(tree / chart, values if values is not None else _values(tree, chart), release="rel"))
    return [d for d in docs if d["kind"] == "RayJob"], docs


def test_engine_ray_adapter_renders_one_rayjob_and_no_job_or_trainjob(tree):
    for chart in (BIG, SMALL):
        (entry,) = _values(tree, chart)["training"]["jobs"]
        assert entry["kind"] == "RayJob"
        rayjobs, docs = _rayjobs(tree, chart)
        assert len(rayjobs) == 1 and not [d for d in docs if d["kind"] in ("Job", "TrainJob")]
        assert crd_validate(rayjobs) == []
        assert manifest_problems(docs) == []
        assert helm_lint(tree / chart, _values(tree, chart)) == []


def test_rayjob_runs_vilms_train_on_its_own_ray_cluster(tree):
    (rj,), _ = _rayjobs(tree, BIG)
    (entry,) = _values(tree, BIG)["training"]["jobs"]
    assert rj["apiVersion"] == ray.API_VERSION == "ray.io/v1"
    spec = rj["spec"]
    assert shlex.split(spec["entrypoint"]) == ["python", "-m", "vilms", "train", "support-multinode", "--ray", "auto",
                                               "--resume", "--no-progress", "-f", f"{trainer.WORKSPACE}/vilms.yaml"]
    assert (spec["submissionMode"], spec["shutdownAfterJobFinishes"], spec["ttlSecondsAfterFinished"], spec["backoffLimit"]) == (
        "K8sJobMode", True, 3600, 2)
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.VERSION
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"] == {"num-cpus": "0", "num-gpus": "0"}  # no training worker on the head
    (head_container,) = head["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in head_container["resources"].get("limits", {})
    assert {p["containerPort"] for p in head_container["ports"]} == {ray.GCS_PORT, ray.DASHBOARD_PORT, ray.CLIENT_PORT}
    (group,) = cluster["workerGroupSpecs"]
    assert (group["groupName"], group["replicas"], group["minReplicas"], group["maxReplicas"]) == (ray.TRAIN_WORKER_GROUP, 2, 2, 2)
    assert group["rayStartParams"] == {"num-gpus": "4"}
    pod = group["template"]["spec"]
    (worker,) = pod["containers"]
    assert worker["resources"] == entry["resources"] == {"requests": {"cpu": "2", "memory": "256Gi"},
                                                          "limits": {"nvidia.com/gpu": 4, "memory": "1022Gi"}}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    for spec_, container in ((head["template"]["spec"], head_container), (pod, worker)):
        assert container["image"] == "{repository}:{tag}".format(**_values(tree, BIG)["images"]["trainer"])
        volumes = {v["name"]: v for v in spec_["volumes"]}
        assert volumes["workspace"]["persistentVolumeClaim"] == {"claimName": "trainco-workspace"}
        assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
        assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]} == {"workspace": trainer.WORKSPACE, "shm": "/dev/shm"}
    assert rj["metadata"]["name"] == f"big-train-support-multinode-{entry['revision']}"


def test_one_gpu_adapter_rayjob_has_one_worker_pod_with_one_gpu(tree):
    (rj,), _ = _rayjobs(tree, SMALL)
    (group,) = rj["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert (group["replicas"], group["rayStartParams"]) == (1, {"num-gpus": "1"})
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_rayjob_is_disabled_by_default(tree):
    rayjobs, _ = _rayjobs(tree, BIG, _values(tree, BIG, enabled=False))
    assert rayjobs == []
    notes = next(t for p, t in helm_render(tree / BIG, _values(tree, BIG), release="rel").items() if p.endswith("NOTES.txt"))
    assert "RayJob (KubeRay)" in notes and "kubectl get rayjob big-train-support-multinode-" in notes


def test_rayjob_validates_strictly(tree):
    (rj,), _ = _rayjobs(tree, BIG)
    for broken in (lambda d: d["spec"].update(entrypointNumGpus="4"),  # a string where KubeRay wants a number
                   lambda d: d["spec"].update(shutdownAfterJobFinish=True),  # a misspelt key
                   lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].pop("groupName"),
                   lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"].update(replicas=1)):
        bad = copy.deepcopy(rj)
        broken(bad)
        assert crd_validate([bad]) != []


def test_rayjob_names_fit_kuberay_limit(tree):
    """KubeRay refuses a RayJob name over 47 characters (its RayCluster is <name>-<5 random>); the revision stays."""
    values = _values(tree, BIG)
    values["fullname"] = "a" * 40
    job = values["training"]["jobs"][0]
    job["name"] = "b" * 63
    (rj,), _ = _rayjobs(tree, BIG, values)
    name = rj["metadata"]["name"]
    assert len(name) == ray.RAYJOB_NAME_MAX and RFC1035.match(name) and name.endswith(f"-{job['revision']}")


@pytest.mark.parametrize("broken", [
    lambda j: j.pop("rayJob"),
    lambda j: j.pop("numNodes"),
    lambda j: j.update(maxRestarts=3),  # Ray Train's FailureConfig takes it from the training config
    lambda j: j["rayJob"].update(submissionMode="Nope"),
    lambda j: j["rayJob"].pop("headResources"),
    lambda j: j.update(kind="Job"),  # a Job carries no RayJob keys
], ids=["no-rayJob", "no-numNodes", "maxRestarts", "bad-mode", "no-head-resources", "job-with-rayjob-keys"])
def test_values_schema_holds_the_rayjob_keys(broken, tree):
    import helm_python

    values = _values(tree, BIG)
    broken(values["training"]["jobs"][0])
    with pytest.raises(helm_python.HelmError):
        helm_render(tree / BIG, values)


def test_training_config_says_engine_ray(tree):
    config = load_yaml((tree / "training" / "support-multinode.yaml").read_text(encoding="utf-8"))
    assert config["distributed"]["engine"] == "ray"
    assert (config["distributed"]["nnodes"], config["distributed"]["nproc_per_node"]) == (2, 4)


def test_deployment_starting_with_a_digit_cannot_hold_a_rayjob(tmp_path):
    """KubeRay refuses a RayJob name that is not RFC 1035; even a 1-GPU adapter (no TrainJob) is caught."""
    from vilms.compiler.pipeline import diagnostics

    source = tmp_path / "vilms.yaml"
    source.write_text(SOURCE.replace("  small: {hardware: l4", "  9small: {hardware: l4"), encoding="utf-8")
    (found,) = [d for d in diagnostics(source) if d.path == "deployments.9small"]
    assert "RayJob of adapter 'support-small'" in found.message and found.line > 0
    assert "starts with a letter" in (found.hint or "")
    source.write_text(FIXTURES["fx-helm-train"].replace("  small: {hardware: l4", "  9small: {hardware: l4"), encoding="utf-8")
    assert [d for d in diagnostics(source) if d.path == "deployments.9small"] == []  # torchrun on 1 GPU: a Job
