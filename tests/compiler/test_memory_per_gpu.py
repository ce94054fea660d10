"""Training memory per GPU under DDP and FSDP, the `auto` strategy, the build failure when one
GPU's share does not fit, and what `vilms explain` shows (compiler/memory/training.py, strategy.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.compiler.test_memory import LLAMA_31_8B, adapter, hardware, model, plan
from tests.conftest import run_vilms
from vilms.compiler import memory
from vilms.compiler.errors import InvalidInputError
from vilms.compiler.explain import explain_deployment
from vilms.compiler.memory import GIB, Estimate, choose_strategy, estimate_training
from vilms.compiler.pipeline import compile_plan

REPO = Path(__file__).resolve().parents[2]
GPU_CLUSTER = REPO / "examples" / "gpu-cluster" / "vilms.yaml"
LLAMA_31_70B = {"layers": 80, "hidden_size": 8192, "heads": 64, "kv_heads": 8, "head_dim": 128,
                "intermediate_size": 28672, "vocab_size": 128256, "tie_word_embeddings": False}
SHARDED = ("weights", "lora", "optimizer")
PER_DEVICE = ("activations", "logits")


def trained(method: str = "lora", arch: dict = LLAMA_31_8B, *, gpus: int = 2, nodes: int = 1,
            gpu_memory: int = 80 * GIB, strategy: str = "auto", kind: str = "gpu", **kw):
    hw = hardware("hw", kind, memory=512 * GIB, gpus=gpus, gpu_memory=gpu_memory, nodes=nodes)
    a = adapter(method=method, hw="hw", strategy=strategy, **kw)
    return plan([model("m", arch)], [hw], [a]), a


# --- the formulas ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_ddp_is_a_full_replica_whatever_the_world(method: str) -> None:
    p, a = trained(method)
    alone = estimate_training(p, a)  # the single-process estimate, held to publications in test_memory.py
    for world in (2, 16, 64_000):
        ddp = estimate_training(p, a, strategy="ddp", world=world)
        assert [getattr(ddp, c) for c in Estimate.COMPONENTS] == [getattr(alone, c) for c in Estimate.COMPONENTS]
        assert ddp.all_gather == 0 and "all_gather" not in ddp.details


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_fsdp_over_one_process_is_ddp_plus_the_all_gather(method: str) -> None:
    p, a = trained(method)
    ddp = estimate_training(p, a, strategy="ddp", world=1)
    fsdp = estimate_training(p, a, strategy="fsdp", world=1)
    for comp in (*SHARDED, *PER_DEVICE):
        assert getattr(fsdp, comp) == getattr(ddp, comp), comp
    # the root unit (embeddings, head, norms) and one decoder layer unsharded, plus that
    # layer's fp32 LoRA weights and gradients
    shape = memory.Shape.of(LLAMA_31_8B)
    rest = shape.params - shape.linear_params
    layer_linear = shape.linear_params // shape.layers
    base = 4 * rest + int(layer_linear * 4.127 / 8) if method == "qlora" else 2 * rest + 2 * layer_linear
    lora_per_layer = shape.lora_params(8, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]) // 32
    assert fsdp.all_gather == base + 2 * 4 * lora_per_layer
    assert fsdp.total > ddp.total
    assert "unsharded" in fsdp.details["all_gather"] and "P_lin/L" in fsdp.details["all_gather"]


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_fsdp_shares_shrink_with_the_world(method: str) -> None:
    p, a = trained(method, LLAMA_31_70B, batch_size=1, seq_len=4096)
    ddp = estimate_training(p, a, strategy="ddp")
    one = estimate_training(p, a, strategy="fsdp", world=1)
    totals = []
    for world in (1, 2, 4, 8, 16):
        fsdp = estimate_training(p, a, strategy="fsdp", world=world)
        for comp in SHARDED:  # QLoRA's NF4 weights shard as well
            assert getattr(fsdp, comp) == math.ceil(getattr(ddp, comp) / world), comp
        for comp in (*PER_DEVICE, "all_gather"):
            assert getattr(fsdp, comp) == getattr(one, comp), comp
        totals.append(fsdp.total)
    assert totals == sorted(totals, reverse=True) and len(set(totals)) == len(totals)
    assert "÷ 16 (sharded)" in estimate_training(p, a, strategy="fsdp", world=16).details["weights"]


def test_memory_estimate_is_the_chosen_strategys_share() -> None:
    p, a = trained("lora", LLAMA_31_70B, gpus=8, nodes=2, batch_size=1, seq_len=4096)
    chosen = choose_strategy(p, a)
    assert chosen.name == "fsdp" and chosen.world == 16
    assert memory.training_estimates(p)["ad"] == chosen.fsdp.as_dict()
    # FSDP's all-gather working set is unsharded weights: the trainer's key set has no row for it
    assert chosen.fsdp.as_dict()["weights_bytes"] == chosen.fsdp.weights + chosen.fsdp.all_gather


# --- auto ---------------------------------------------------------------------------------------
def test_auto_keeps_ddp_while_a_replica_fits_one_gpu_and_shards_from_one_byte_more() -> None:
    p, a = trained("lora")
    replica = estimate_training(p, a).total
    at, _ = trained("lora", gpu_memory=replica)
    below, _ = trained("lora", gpu_memory=replica - 1)
    assert choose_strategy(at, a).name == "ddp"
    assert choose_strategy(at, a).reason.startswith("auto: a replica needs ")
    chosen = choose_strategy(below, a)
    assert chosen.name == "fsdp"
    assert chosen.reason == (f"auto: a replica needs {memory.estimate.gib(replica)} > "
                             f"{memory.estimate.gib(replica - 1)} per GPU; FSDP over 2 GPUs needs "
                             f"{memory.estimate.gib(chosen.fsdp.total)} each")
    assert memory.check_plan(below) == []


def test_auto_on_one_gpu_cpu_and_jetson_stays_ddp() -> None:
    p, a = trained("lora", gpus=1, gpu_memory=8 * GIB)
    chosen = choose_strategy(p, a)
    assert (chosen.name, chosen.world) == ("ddp", 1) and "FSDP over one GPU shards nothing" in chosen.reason
    for kind in ("cpu", "jetson"):
        p, a = trained("lora", kind=kind)
        chosen = choose_strategy(p, a)
        assert (chosen.name, chosen.world) == ("ddp", 1)
        assert chosen.reason == f"auto: one process by default on a {kind} profile"


def test_declared_strategies_are_kept() -> None:
    small, a = trained("lora", strategy="fsdp")
    assert choose_strategy(small, a).name == "fsdp"  # even where a replica would fit
    big, b = trained("lora", LLAMA_31_70B, gpus=8, nodes=2, strategy="ddp", batch_size=1, seq_len=4096)
    assert choose_strategy(big, b).name == "ddp" and choose_strategy(big, b).reason == "training.strategy is ddp"


# --- the build fails when one GPU's share does not fit ----------------------------------------
def test_declared_ddp_that_does_not_fit_is_located_at_the_strategy() -> None:
    p, a = trained("lora", LLAMA_31_70B, gpus=8, nodes=2, strategy="ddp", batch_size=1, seq_len=4096)
    [problem] = memory.check_plan(p)
    assert problem.path == ("adapters", "ad", "training", "strategy")
    assert "per GPU with DDP (a full replica on each of 16 GPUs)" in problem.message
    assert problem.hint.startswith("use training.strategy: fsdp or auto (FSDP over 16 GPUs needs ")
    assert "qlora" not in problem.hint  # FSDP fits: that is the fix
    p, a = trained("lora", LLAMA_31_70B, gpus=2, strategy="ddp", batch_size=1, seq_len=4096)
    [problem] = memory.check_plan(p)
    assert problem.hint.startswith("use training.strategy: fsdp or auto (FSDP over 2 GPUs needs ")
    assert "use method: qlora, lower training.batch_size or training.seq_len" in problem.hint


def test_fsdp_that_does_not_fit_names_more_gpus_or_nodes() -> None:
    p, a = trained("lora", LLAMA_31_70B, gpus=2, nodes=1, batch_size=1, seq_len=4096)
    [problem] = memory.check_plan(p)
    assert choose_strategy(p, a).name == "fsdp"
    assert problem.path == ("adapters", "ad", "hardware")
    assert "per GPU with FSDP over 2 GPUs" in problem.message
    assert "add GPUs or nodes to hardware 'hw'" in problem.hint and "training.strategy: fsdp" not in problem.hint
    assert "FSDP, per GPU of 2" in problem.table and "DDP, per GPU of 2" in problem.table


def _edit_gpu_cluster(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    text = GPU_CLUSTER.read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "vilms.yaml"
    path.write_text(text, encoding="utf-8")
    return path


PROFILE = "h100x8-2nodes: {kind: gpu, gpus: 8, nodes: 2, gpu_memory: 80GiB"
CONTRACTS_TRAINING = "training: {epochs: 1, batch_size: 1, gradient_accumulation_steps: 4, seq_len: 4096, seed: 5}"


def test_build_failure_messages(tmp_path: Path, snapshot) -> None:  # noqa: ANN001 - syrupy fixture
    declared_ddp = _edit_gpu_cluster(tmp_path, (CONTRACTS_TRAINING, CONTRACTS_TRAINING[:-1] + ", strategy: ddp}"))
    result = run_vilms("build", "-f", str(declared_ddp))
    assert result.code == 1 and "Traceback" not in result.err
    assert not (tmp_path / "generated").exists()
    assert result.err == snapshot(name="declared ddp, a replica does not fit")
    on_two_gpus = _edit_gpu_cluster(tmp_path, ("hardware: h100x8-2nodes\n    release: null", "hardware: h100x2\n    release: null"))
    result = run_vilms("validate", "-f", str(on_two_gpus))
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err == snapshot(name="auto, FSDP over 2 GPUs does not fit")


@pytest.mark.parametrize("profile", [
    "h100x8-2nodes: {kind: gpu, gpus: 64, nodes: 1000, gpu_memory: 80GiB",
    "h100x8-2nodes: {kind: gpu, gpus: 64, nodes: 1000, gpu_memory: 1KiB",
    "h100x8-2nodes: {kind: gpu, gpus: 1, nodes: 1, gpu_memory: 1KiB",
    "h100x8-2nodes: {kind: gpu, gpus: 99999999999999999999, nodes: 99999999999999999999, gpu_memory: 80GiB",
    "h100x8-2nodes: {kind: gpu, gpus: 8, nodes: 2, gpu_memory: 99999999TiB",
])
def test_hostile_worlds_get_located_answers(tmp_path: Path, profile: str) -> None:
    path = _edit_gpu_cluster(tmp_path, (PROFILE, profile))
    try:
        doc, p = compile_plan(path)
    except InvalidInputError as exc:
        located = ("hardware.h100x8-2nodes", "adapters.contracts-v1.", "deployments.prod-70b.")
        assert all(d.path.startswith(located) and d.line > 0 for d in exc.diagnostics), exc.diagnostics
        return
    chosen = choose_strategy(p, p.adapters["contracts-v1"])
    assert chosen.estimate.fits and chosen.world == p.hardware["h100x8-2nodes"].gpus * p.hardware["h100x8-2nodes"].nodes
    assert "training contracts-v1:" in explain_deployment(p, "prod-70b")


# --- vilms explain --------------------------------------------------------------------------
def test_explain_shows_ddp_and_fsdp_per_gpu(snapshot) -> None:  # noqa: ANN001 - syrupy fixture
    _doc, p = compile_plan(GPU_CLUSTER)
    big = explain_deployment(p, "prod-70b")
    training = big[big.index("training contracts-v1:"):]
    assert training.splitlines()[0].startswith("training contracts-v1: fsdp on 16 GPUs (auto: a replica needs ")
    assert training == snapshot(name="70B LoRA: FSDP over 2 nodes of 8 GPUs")
    small = explain_deployment(p, "prod")
    assert "training tickets-v3: ddp on 2 GPUs (auto: a replica needs " in small
    assert "80 GiB per GPU of 2 GPUs on 1 node" in small and "one 80 GiB GPU" not in small
    assert small.count("FSDP, per GPU of 2") == 2 and small.count("DDP, per GPU of 2") == 2


def test_explain_on_one_process_shows_one_table() -> None:
    _doc, p = compile_plan(REPO / "examples" / "cpu-laptop" / "vilms.yaml")
    text = "\n".join(memory.explain_lines(p, next(iter(p.deployments.values()))))
    [line] = [x for x in text.splitlines() if x.startswith("training ")]
    assert line.endswith("on 1 process (auto: one process by default on a cpu profile)")
    assert "FSDP" not in text
