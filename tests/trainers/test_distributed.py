"""Training on several processes (torchrun, gloo on CPU): the same numbers as one process,
restarts, SIGTERM and resume, hung ranks, and the limits of a hardware profile."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vilms.compiler.contracts.run_record import RUN_RECORD
from vilms.compiler.errors import ActionError, ExitCode, UsageError

from .conftest import QLORA, write_project

pytestmark = pytest.mark.heavy

SAME = {"training": {"max_steps": 6, "save_steps": 3, "eval_steps": 3}, "lora": {"lora_dropout": 0.0}}
# a run long enough to kill after its first checkpoint; dropout makes every rank's RNG state matter
LONG = {"training": {"max_steps": 30, "save_steps": 5, "eval_steps": 10}, "lora": {"lora_dropout": 0.1}}
GATE = {"max_eval_perplexity": 1.0e6, "on_fail": "approval",
        "regression": [{"prompt": "How do I reset my password?", "expect_substring": "zebra", "expect_exact": None}]}
# a run with GATE trains to the end and its gate asks for approval: `vilms train` exits ExitCode.GATE
GATE_EXIT = int(ExitCode.GATE)


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "VILMS_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train(project: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vilms", "train", "tiny-v1", "-f", str(project), "--no-progress", *extra],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def _finish(proc: subprocess.Popen[bytes], code: int = 0) -> str:
    out, _ = proc.communicate(timeout=300)
    text = out.decode()
    assert proc.returncode == code, text
    return text


def _only_run(project: Path) -> Path:
    (run,) = list((project.parent / "artifacts").iterdir())
    return run


def _results(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load_file

    return json.loads((run / "metrics.json").read_text()), load_file(str(run / "adapter" / "adapter_model.safetensors"))


def _wait_for(pattern: str, root: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early: {proc.stdout.read().decode() if proc.stdout else ''}")
        time.sleep(0.02)
    raise AssertionError(f"{pattern} did not appear")


def _rank_pid(project: Path, proc: subprocess.Popen[bytes], rank: int) -> int:
    root = project.parent / "artifacts"
    _wait_for("*/checkpoints/step-*/state.json", root, proc)
    return int(json.loads(_wait_for(f"*/heartbeat/rank-{rank}.json", root, proc).read_text())["pid"])


def _assert_close(run: Path, reference: Path, rel: float, absolute: float) -> None:
    metrics, weights = _results(run)
    ref_metrics, ref_weights = _results(reference)
    losses = [loss for _, loss in metrics["train_loss"]["history"]]
    ref_losses = [loss for _, loss in ref_metrics["train_loss"]["history"]]
    assert len(losses) == len(ref_losses)
    for step, (a, b) in enumerate(zip(losses, ref_losses, strict=True), 1):
        assert abs(a - b) <= rel * abs(b), (step, a, b)
    assert metrics["tokens_processed"] == ref_metrics["tokens_processed"]
    assert weights.keys() == ref_weights.keys()
    for name in weights:
        assert float((weights[name] - ref_weights[name]).abs().max()) <= absolute, name


def _assert_clean(run: Path) -> None:
    """Rank 0 wrote everything once; nothing half-written or per-rank is left."""
    assert sorted(p.name for p in run.iterdir()) == [
        "adapter", "checkpoints", "loss.png", "metrics.json", "run.json", "training.yaml"]
    assert not list((run / "checkpoints").glob(".tmp-*")) and len(list((run / "checkpoints").iterdir())) <= 2


METHODS = {"lora": {}, "qlora": {"method": "qlora", "quantization": QLORA}}


@pytest.fixture(scope="module")
def one_process(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """One process, accumulation 2: the same global batch (8) as 2 processes × accumulation 1 (one run per method)."""
    pytest.importorskip("peft")
    runs: dict[str, Path] = {}

    def run(method: str) -> Path:
        if method not in runs:
            changes = {**SAME, **METHODS[method], "training": {**SAME["training"], "gradient_accumulation_steps": 2},
                       "gate": GATE}
            project = write_project(tmp_path_factory.mktemp(method) / "proj", tiny_model, changes)
            _finish(_train(project), GATE_EXIT)
            runs[method] = _only_run(project)
        return runs[method]

    return run


# QLoRA + FSDP2 shards the 4-bit base too; QLoRA + DDP runs the LoRA code path on a 4-bit replica
@pytest.mark.parametrize(("method", "strategy"), [("lora", "ddp"), ("lora", "fsdp"), ("qlora", "fsdp")])
def test_two_processes_match_one_process(
    method: str, strategy: str, one_process: Callable[[str], Path], tiny_model: Path, tmp_path: Path
) -> None:
    one_process_run = one_process(method)
    project = write_project(tmp_path / "proj", tiny_model,
                            {**SAME, **METHODS[method], "gate": GATE, "distributed": {"strategy": strategy}})
    out = _finish(_train(project, "--nproc-per-node", "2"), GATE_EXIT)
    assert f"global batch 4 per device × 2 processes × 1 accumulation = 8 ({strategy}, gloo)" in out
    run = _only_run(project)
    # measured on torch 2.13 CPU/gloo: losses and weights equal to the last bit for DDP and FSDP2
    _assert_close(run, one_process_run, rel=1e-4, absolute=1e-5)
    _assert_clean(run)
    record = RUN_RECORD.load(run / "run.json")
    assert record.status == "completed" and record.distributed is not None
    assert (record.distributed.strategy, record.distributed.backend, record.distributed.world_size,
            record.distributed.global_batch) == (strategy, "gloo", 2, 8)
    one = RUN_RECORD.load(one_process_run / "run.json")
    assert record.gate is not None and one.gate is not None
    assert record.gate.regression == one.gate.regression  # the FSDP gate generates on every rank, in step
    assert abs(record.gate.eval_loss - one.gate.eval_loss) <= 1e-6  # type: ignore[operator]


@pytest.fixture(scope="module")
def uninterrupted(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("peft")
    project = write_project(tmp_path_factory.mktemp("two") / "proj", tiny_model, LONG)
    _finish(_train(project, "--nproc-per-node", "2"))
    return _only_run(project)


def test_killed_worker_is_restarted_and_the_run_resumes(uninterrupted: Path, tiny_model: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", tiny_model, LONG)
    proc = _train(project, "--nproc-per-node", "2")
    os.kill(_rank_pid(project, proc, 1), signal.SIGKILL)
    out = _finish(proc)
    run = _only_run(project)
    assert "completed" in out
    _assert_close(run, uninterrupted, rel=0.0, absolute=0.0)  # bit for bit
    _assert_clean(run)
    metrics, _ = _results(run)
    assert [s for s, _ in metrics["train_loss"]["history"]] == list(range(1, 31))
    assert [s for s, _ in metrics["eval_history"]] == [10, 20]
    record = RUN_RECORD.load(run / "run.json")
    assert record.status == "completed" and [s.resumed for s in record.sessions] == [False, True]


def test_sigterm_stops_every_rank_and_resume_finishes_exactly(
    uninterrupted: Path, tiny_model: Path, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "proj", tiny_model, LONG)
    proc = _train(project, "--nproc-per-node", "2")
    _rank_pid(project, proc, 0)
    proc.send_signal(signal.SIGTERM)
    out = _finish(proc, 1)
    assert "training stopped by SIGTERM" in out and "--resume" in out and "Traceback" not in out
    run = _only_run(project)
    assert RUN_RECORD.load(run / "run.json").status == "interrupted"
    assert not (run / "metrics.json").exists()

    other = _finish(_train(project, "--resume", "--nproc-per-node", "1"), 1)
    assert "trained on 2 processes; resuming it on 1 is not supported" in other
    assert "resume with --nproc-per-node 2" in other

    _finish(_train(project, "--resume", "--nproc-per-node", "2"))
    _assert_close(run, uninterrupted, rel=0.0, absolute=0.0)
    record = RUN_RECORD.load(run / "run.json")
    assert record.status == "completed" and [s.resumed for s in record.sessions] == [False, True]


def test_a_stopped_rank_fails_the_run_naming_it(tiny_model: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", tiny_model, {
        **LONG, "training": {**LONG["training"], "max_steps": 200},
        "distributed": {"collective_timeout_s": 3.0, "max_restarts": 0}})
    proc = _train(project, "--nproc-per-node", "2")
    pid = _rank_pid(project, proc, 1)
    os.kill(pid, signal.SIGSTOP)
    try:
        out = _finish(proc, 1)
    finally:
        with pytest.raises(ProcessLookupError):  # torchrun killed it
            os.kill(pid, signal.SIGCONT)
    assert re.search(r"training failed on rank 0 .*\n  rank 0: exit code 1: rank 0: a collective failed", out), out
    assert re.search(rf"did not arrive: rank 1 \(pid {pid} on .*, silent for", out), out
    assert "Traceback" not in out
    assert RUN_RECORD.load(_only_run(project) / "run.json").status == "failed"


# ------------------------------------------------------------------ limits and the multi-node printout (no torchrun)
def _start(project: Path, **kwargs: Any) -> Any:
    from vilms.trainers.trainer import train

    return train(project, "tiny-v1", show_progress=False, **kwargs)


@pytest.mark.parametrize(
    ("hardware", "nproc", "message"),
    [
        ({"kind": "jetson", "name": "orin"}, 2, "Jetson trains in one process (its one integrated GPU)"),
        ({"kind": "cpu", "cpus": 2}, 3, "hardware laptop declares cpus: 2"),
    ],
)
def test_more_processes_than_the_profile_allows(
    hardware: dict[str, Any], nproc: int, message: str, tmp_path: Path
) -> None:
    limit = 1 if hardware["kind"] == "jetson" else hardware["cpus"]
    project = write_project(tmp_path / "proj", None, {"hardware": hardware, "distributed": {"max_nproc_per_node": limit}})
    with pytest.raises(UsageError, match=re.escape(message)):
        _start(project, nproc_per_node=nproc)
    assert not (tmp_path / "proj" / "artifacts").exists()


def test_replicas_that_do_not_fit_memory_are_refused(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", None, {"memory_estimate": {"total_bytes": 9 * 2**30}})
    with pytest.raises(ActionError, match=r"2 processes × 9 GiB .* = 18 GiB does not fit 15 GiB") as info:
        _start(project, nproc_per_node=2)
    assert "training.strategy: fsdp" in (info.value.hint or "")


def test_multinode_prints_the_torchrun_command(tiny_model: Path, tmp_path: Path, snapshot: Any) -> None:
    project = write_project(tmp_path / "proj", tiny_model)
    with pytest.raises(UsageError, match="needs --rdzv-endpoint"):
        _start(project, nnodes=2)
    proc = subprocess.run(
        [sys.executable, "-m", "vilms", "train", "tiny-v1", "-f", "vilms.yaml", "--nnodes", "2", "--nproc-per-node",
         "2", "--rdzv-endpoint", "node0:29500"], cwd=project.parent, env=_env(), capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    run = _only_run(project)
    record = RUN_RECORD.load(run / "run.json")
    assert record.status == "running" and record.distributed is not None and record.distributed.world_size == 4
    assert proc.stdout.replace(run.name, "RUN") == snapshot


def test_workers_started_like_a_trainjob_find_or_create_the_run(tiny_model: Path, tmp_path: Path) -> None:
    """Kubeflow Trainer runs `torchrun … -m vilms train ADAPTER --worker --resume`: rank 0 creates the run."""
    project = write_project(tmp_path / "proj", tiny_model, SAME)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "vilms", "train", "tiny-v1", "--worker", "--resume", "-f", str(project), "--no-progress"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = _only_run(project)
    assert "no unfinished run of this config to resume; starting a new run" in proc.stderr
    record = RUN_RECORD.load(run / "run.json")
    assert record.status == "completed" and record.distributed is not None and record.distributed.world_size == 2
    _assert_clean(run)
