"""The per-target deployment settings resolve to the plan: threads and gpu_layers (local),
kube_context and namespace (helm), and the top-level gitops: block."""

from __future__ import annotations

from pathlib import Path

from tests.compiler.minimal import MINIMAL
from vilms.compiler.contracts.local_plan import LOCAL_PLAN
from vilms.compiler.facts import gitops, llamacpp
from vilms.compiler.pipeline import build

TWO_MODELS = MINIMAL.replace("models:\n", "models:\n  qwen0:\n    gguf: hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF\n"
                             "    source: hf:Qwen/Qwen2.5-0.5B-Instruct\n    family: qwen2\n    params: 0.5B\n"
                             "    context: 4096\n    chat_template: chatml\n", 1).replace(
    "  chat: qwen2.5-1.5b\n", "  chat: qwen2.5-1.5b\n  small: qwen0\n", 1).replace(
    "engine: vllm}", "engine: vllm, aliases: [chat, support-bot]}", 1)


def _build(tmp_path: Path, text: str):
    (tmp_path / "vilms.yaml").write_text(text)
    return build(tmp_path / "vilms.yaml")


def _servers(tmp_path: Path):
    return LOCAL_PLAN.load(tmp_path / "generated" / "dev" / "local.yaml").servers


def test_threads_default_to_the_hardware_cpus_split_among_servers(tmp_path):
    plan = _build(tmp_path, TWO_MODELS).plan
    assert plan.deployments["dev"].threads == 4  # laptop: cpus 4
    assert [s.threads for s in _servers(tmp_path)] == [2, 2]
    assert [s.gpu_layers for s in _servers(tmp_path)] == [0, 0]  # cpu hardware: nothing offloaded


def test_threads_given_are_split_and_never_below_one(tmp_path):
    _build(tmp_path, TWO_MODELS.replace("engine: llamacpp}", "engine: llamacpp, threads: 1}"))
    assert [s.threads for s in _servers(tmp_path)] == [1, 1]
    _build(tmp_path, TWO_MODELS.replace("engine: llamacpp}", "engine: llamacpp, threads: 7}"))
    assert [s.threads for s in _servers(tmp_path)] == [3, 3]


def test_gpu_layers_all_on_a_gpu_profile(tmp_path):
    text = MINIMAL.replace("dev: {hardware: laptop, target: local, engine: llamacpp}",
                           "dev: {hardware: gpu1, target: local, engine: llamacpp}")
    plan = _build(tmp_path, text).plan
    assert plan.deployments["dev"].gpu_layers == llamacpp.ALL_GPU_LAYERS
    _build(tmp_path, text.replace("engine: llamacpp}", "engine: llamacpp, gpu_layers: 12}"))
    assert [s.gpu_layers for s in _servers(tmp_path)] == [12]
    _build(tmp_path, text.replace("engine: llamacpp}", "engine: llamacpp, gpu_layers: all}"))
    assert [s.gpu_layers for s in _servers(tmp_path)] == [llamacpp.ALL_GPU_LAYERS]


def test_helm_context_namespace_and_gitops_resolve(tmp_path):
    text = MINIMAL.replace("gpu: {hardware: gpu1, target: compose, engine: vllm}",
                           "gpu: {hardware: gpu1, target: helm, engine: vllm, kube_context: 'arn:aws:eks:eu-west-1:1:cluster/prod',"
                           " namespace: llm}")
    text += "gitops:\n  repository: https://github.com/acme/llm.git\n  revision: main\n  argocd: {}\n"
    plan = _build(tmp_path, text).plan
    dep = plan.deployments["gpu"]
    assert (dep.kube_context, dep.namespace) == ("arn:aws:eks:eu-west-1:1:cluster/prod", "llm")
    assert plan.gitops is not None and plan.gitops.flux is None and plan.gitops.path == ""
    assert plan.gitops.argocd is not None
    assert (plan.gitops.argocd.namespace, plan.gitops.argocd.project) == (gitops.ARGOCD_NAMESPACE, gitops.ARGOCD_PROJECT)
