"""Training on the cluster, read from Helm's own render: an adapter whose hardware profile has more than one
GPU or node trains as a Kubeflow Trainer v2 TrainJob on the torch-distributed runtime (torchrun on every
node, the workspace patched into the runtime's trainer container), an adapter on one GPU keeps its batch
Job; every TrainJob validates strictly against Kubeflow Trainer's CRD schema (tests/crds/)."""

from __future__ import annotations

import copy
import re

import pytest

from tests.support.projects import FIXTURES, compiled_in_memory
from tests.support.validators import crd_validate, helm_lint, helm_render, load_yaml, manifest_problems, manifests
from tests.targets.test_target_helm import CHARTS, IDS, _values
from vilms.compiler.facts import kubeflow, trainer
from vilms.compiler.pipeline import compile_files

TRAIN = ("fx-helm-train", "big/helm")  # an adapter on a profile of 2 nodes × 4 GPUs
SMALL = ("fx-helm-train", "small/helm")  # an adapter on one GPU
RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _enabled(values: dict) -> dict:
    v = copy.deepcopy(values)
    for job in v["training"]["jobs"]:
        job["enabled"] = True
    return v


def _render(project: str, chart: str, generated_tree, values: dict | None = None) -> list[dict]:
    values = _enabled(_values(project, chart)) if values is None else values
    return manifests(helm_render(generated_tree(project) / chart, values, release="rel"))


def _of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def _adapter_of(doc: dict) -> str:
    if doc["kind"] == "RayJob":
        args = doc["spec"]["entrypoint"].split()
        return args[args.index("train") + 1]
    args = doc["spec"]["trainer"]["args"] if doc["kind"] == "TrainJob" else doc["spec"]["template"]["spec"]["containers"][0]["args"]
    return args[args.index("train") + 1]


def _patched_pod(trainjob: dict) -> dict:
    (patch,) = trainjob["spec"]["runtimePatches"]
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == kubeflow.REPLICATED_JOB
    return rjob["template"]["spec"]["template"]


@pytest.mark.parametrize(("project", "chart"), CHARTS, ids=IDS)
def test_each_adapter_trains_as_its_distributed_spec_says(project, chart, generated_tree):
    """RayJob for adapters with training.engine ray; else TrainJob exactly for adapters whose training config spans
    several processes or nodes, Job for the rest."""
    values = _values(project, chart)
    files = compiled_in_memory(project)
    docs = _render(project, chart, generated_tree)
    expected = {}
    for job in values["training"]["jobs"]:
        dist = load_yaml(files[f"training/{job['adapter']}.yaml"])["distributed"]
        expected[job["adapter"]] = ("RayJob" if dist["engine"] == "ray" else
                                    "TrainJob" if dist["nnodes"] > 1 or dist["nproc_per_node"] > 1 else "Job")
        assert job["kind"] == expected[job["adapter"]]
        if job["kind"] == "TrainJob":
            assert (job["numNodes"], job["numProcPerNode"], job["maxRestarts"]) == (
                dist["nnodes"], dist["nproc_per_node"], dist["max_restarts"])
    rendered = {_adapter_of(d): d["kind"] for d in docs if d["kind"] in ("Job", "TrainJob", "RayJob")}
    assert rendered == expected
    assert manifest_problems(docs) == []


def test_two_gpu_example_adapters_become_trainjobs_and_no_job(generated_tree):
    project, chart = "example-gpu-cluster", "prod/helm"
    docs = _render(project, chart, generated_tree)
    assert _of_kind(docs, "Job") == []
    trainjobs = _of_kind(docs, "TrainJob")
    assert sorted(_adapter_of(d) for d in trainjobs) == ["sql-v1", "tickets-v3"]
    for doc in trainjobs:  # h100x2: one node of two GPUs
        t = doc["spec"]["trainer"]
        assert (t["numNodes"], t["numProcPerNode"], t["resourcesPerNode"]["limits"]["nvidia.com/gpu"]) == (1, 2, 2)
    assert crd_validate(trainjobs) == []


def test_the_training_job_fails_at_once_when_the_gate_refuses_and_retries_crashes(generated_tree):
    """`vilms train` exits ExitCode.GATE when the run's gate failed or needs approval: training again cannot
    change that, so the Job's podFailurePolicy fails it on that code (and only for the trainer container);
    a crash is retried (each attempt resumes) and an eviction does not count. Kubernetes' schema accepts it."""
    from vilms.compiler.errors import ExitCode

    docs = _render(*SMALL, generated_tree)
    (job,) = _of_kind(docs, "Job")
    policy = job["spec"]["podFailurePolicy"]
    assert policy["rules"][0] == {"action": "FailJob", "onExitCodes": {
        "containerName": "trainer", "operator": "In", "values": [int(ExitCode.GATE)]}}
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in policy["rules"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy requires it
    assert job["spec"]["backoffLimit"] >= 1 and ExitCode.GATE not in (ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE)
    assert manifest_problems([job]) == []
    broken = copy.deepcopy(job)
    broken["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] = ["gate"]
    assert manifest_problems([broken]) != []  # the schema does check the policy


def test_one_gpu_adapter_keeps_its_job_and_renders_no_trainjob(generated_tree):
    for project, chart in (("shipped", "cluster/helm"), SMALL):
        (entry,) = _values(project, chart)["training"]["jobs"]
        assert entry["kind"] == "Job"
        docs = _render(project, chart, generated_tree)
        assert _of_kind(docs, "TrainJob") == []
        (job,) = _of_kind(docs, "Job")
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][:2] == ["train", entry["adapter"]]
        assert container["resources"] == entry["resources"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_two_node_profile_renders_a_trainjob_for_two_nodes_of_four_gpus(generated_tree):
    values = _enabled(_values(*TRAIN))
    docs = _render(*TRAIN, generated_tree, values)
    assert _of_kind(docs, "Job") == []
    (tj,) = _of_kind(docs, "TrainJob")
    (job,) = values["training"]["jobs"]
    assert tj["apiVersion"] == kubeflow.API_VERSION == "trainer.kubeflow.org/v1alpha1"
    assert tj["spec"]["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime",
                                        "apiGroup": "trainer.kubeflow.org"}
    t = tj["spec"]["trainer"]
    assert (t["numNodes"], t["numProcPerNode"]) == (2, 4)
    assert t["resourcesPerNode"] == {"requests": {"cpu": "2", "memory": "256Gi"},
                                     "limits": {"nvidia.com/gpu": 4, "memory": "1022Gi"}}
    assert t["image"] == "{repository}:{tag}".format(**values["images"]["trainer"])
    # torchrun takes nodes, processes and the rendezvous from the runtime's PET_* variables
    assert t["command"] == ["torchrun"]
    assert t["args"] == ["--max-restarts=5", "-m", "vilms", "train", "support-multinode", "--worker", "--resume",
                         "-f", f"{trainer.WORKSPACE}/vilms.yaml"]
    assert not any(a.startswith(("--nnodes", "--nproc", "--rdzv", "--master")) for a in t["args"])
    pod = _patched_pod(tj)
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "training"
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    (container,) = spec["containers"]
    assert container["name"] == kubeflow.CONTAINER == "node"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["workspace"]["persistentVolumeClaim"] == {"claimName": "trainco-workspace"}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]} == {"workspace": trainer.WORKSPACE, "shm": "/dev/shm"}
    assert tj["metadata"]["name"] == f"big-train-support-multinode-{job['revision']}"
    assert manifest_problems(docs) == []
    assert helm_lint(generated_tree(TRAIN[0]) / TRAIN[1], values) == []


def test_trainjob_validates_strictly(generated_tree):
    """The CRD schema is strict: what the chart renders passes, a key Kubeflow Trainer does not know fails."""
    (tj,) = _of_kind(_render(*TRAIN, generated_tree), "TrainJob")
    assert crd_validate([tj]) == []
    for broken in (lambda d: d["spec"]["trainer"].update(numProcPerNode="auto"),
                   lambda d: d["spec"]["trainer"].update(nprocPerNode=4),
                   lambda d: _patched_pod(d)["spec"]["containers"][0].update(image="x"),  # a patch sets no image
                   lambda d: d["spec"]["runtimePatches"][0].pop("manager")):
        bad = copy.deepcopy(tj)
        broken(bad)
        assert crd_validate([bad]) != []


@pytest.mark.parametrize("nodes", [2, 11])
def test_trainjob_names_leave_room_for_the_pods_jobset_names(nodes, generated_tree):
    """RFC 1035, at most 63 characters, the revision kept: and <name>-node-0-<last node>-<5 random> fits 63 too."""
    values = _enabled(_values(*TRAIN))
    values["fullname"] = "a" * 40
    job = values["training"]["jobs"][0]
    job.update(name="b" * 63, numNodes=nodes)
    (tj,) = _of_kind(_render(*TRAIN, generated_tree, values), "TrainJob")
    name = tj["metadata"]["name"]
    assert RFC1035.match(name) and name.endswith(f"-{job['revision']}")
    assert len(f"{name}-{kubeflow.REPLICATED_JOB}-0-{nodes - 1}-abcde") == 63


def test_changed_training_config_is_a_new_trainjob(tmp_path):
    """TrainJob specs are immutable: a new training config is a new name (the revision), as for Jobs."""
    before = _values(*TRAIN)["training"]["jobs"][0]
    assert before["kind"] == "TrainJob"
    source = tmp_path / "vilms.yaml"
    source.write_text(FIXTURES[TRAIN[0]].replace("max_restarts: 5", "max_restarts: 5, learning_rate: 1.0e-4"), encoding="utf-8")
    after = load_yaml(compile_files(source)[2]["big/helm/values.yaml"])["training"]["jobs"][0]
    assert after["revision"] != before["revision"]
    assert {k: v for k, v in after.items() if k != "revision"} == {k: v for k, v in before.items() if k != "revision"}


@pytest.mark.parametrize("broken", [
    lambda j: j.pop("numNodes"),
    lambda j: j.pop("revision"),
    lambda j: j.update(numProcPerNode=0),
    lambda j: j.update(kind="PyTorchJob"),
    lambda j: j.update(kind="Job"),  # a Job carries no TrainJob keys
], ids=["no-numNodes", "no-revision", "zero-procs", "unknown-kind", "job-with-trainjob-keys"])
def test_values_schema_holds_the_trainjob_keys(broken, generated_tree):
    import helm_python

    values = _values(*TRAIN)
    broken(values["training"]["jobs"][0])
    with pytest.raises(helm_python.HelmError):
        helm_render(generated_tree(TRAIN[0]) / TRAIN[1], values)


def test_values_schema_requires_the_kind(generated_tree):
    import helm_python

    values = _values(*SMALL)
    del values["training"]["jobs"][0]["kind"]
    with pytest.raises(helm_python.HelmError):
        helm_render(generated_tree(SMALL[0]) / SMALL[1], values)


def test_runtime_facts_reach_the_values():
    assert _values(*TRAIN)["training"]["trainJob"] == {
        "apiVersion": kubeflow.API_VERSION,
        "runtimeRef": {"name": kubeflow.RUNTIME_NAME, "kind": kubeflow.RUNTIME_KIND, "apiGroup": kubeflow.API_GROUP},
        "replicatedJob": kubeflow.REPLICATED_JOB, "container": kubeflow.CONTAINER,
        "patchManager": kubeflow.PATCH_MANAGER, "launcher": kubeflow.LAUNCHER,
    }


def test_notes_name_the_operator_and_how_to_watch(generated_tree):
    root = generated_tree(TRAIN[0]) / TRAIN[1]
    values = _values(*TRAIN)
    off = next(t for p, t in helm_render(root, values, release="rel").items() if p.endswith("NOTES.txt"))
    assert "TrainJob" not in off  # disabled: nothing to install
    on = next(t for p, t in helm_render(root, _enabled(values), release="rel").items() if p.endswith("NOTES.txt"))
    name = f"big-train-support-multinode-{values['training']['jobs'][0]['revision']}"
    assert "TrainJob (Kubeflow Trainer v2 with the torch-distributed ClusterTrainingRuntime)" in on
    assert f"kubectl get trainjob {name}" in on
    assert f"-l jobset.sigs.k8s.io/jobset-name={name}" in on
    assert "ReadWriteMany" in on  # two nodes mount the workspace


def test_training_values_snapshot(snapshot):
    """The training section of the values of a 2-node and a 1-GPU adapter, as the chart receives it."""
    got = {chart: load_yaml(compiled_in_memory(TRAIN[0])[f"{chart}/values.yaml"])["training"] for chart in (TRAIN[1], SMALL[1])}
    assert got == snapshot
