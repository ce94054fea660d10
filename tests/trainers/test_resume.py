"""A run killed mid-way (SIGKILL, SIGTERM) and resumed equals an uninterrupted run, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vilms.compiler.contracts.run_record import RUN_RECORD

from .conftest import write_project

pytestmark = pytest.mark.heavy

# long enough that a kill after the first checkpoint lands well before the end
RESUME = {
    "training": {
        "max_steps": 120,
        "learning_rate": 0.005,
        "save_steps": 10,
        "eval_steps": 25,
        "gradient_accumulation_steps": 2,
        "batch_size": 2,
    },
    "lora": {"lora_dropout": 0.1},
}  # dropout makes the RNG state matter


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "VILMS_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train(project: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vilms", "train", "tiny-v1", "-f", str(project), "--no-progress", *extra],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _only_run(root: Path) -> Path:
    (run,) = list((root / "artifacts").iterdir())
    return run


def _wait_for_checkpoint(root: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ckpts = list((root / "artifacts").glob("*/checkpoints/step-*/state.json"))
        if ckpts:
            return
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early: {proc.stdout.read().decode() if proc.stdout else ''}")
        time.sleep(0.01)
    raise AssertionError("no checkpoint appeared")


def _losses_and_weights(run: Path) -> tuple[list[list[float]], dict[str, object]]:
    from safetensors.torch import load_file

    metrics = json.loads((run / "metrics.json").read_text())
    return metrics["train_loss"]["history"], load_file(str(run / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def reference(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("peft")
    project = write_project(tmp_path_factory.mktemp("ref") / "proj", tiny_model, RESUME)
    proc = _train(project)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()
    return _only_run(project.parent)


def _assert_identical(run: Path, reference: Path) -> None:
    import torch

    losses, weights = _losses_and_weights(run)
    ref_losses, ref_weights = _losses_and_weights(reference)
    assert len(losses) == len(ref_losses) == 120
    assert losses == ref_losses  # exact float equality, every step
    assert weights.keys() == ref_weights.keys()
    for name in weights:
        assert torch.equal(weights[name], ref_weights[name]), name


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_killed_run_resumes_exactly(sig: signal.Signals, reference: Path, tiny_model: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", tiny_model, RESUME)
    proc = _train(project)
    _wait_for_checkpoint(project.parent, proc)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    run = _only_run(project.parent)
    record = RUN_RECORD.load(run / "run.json")
    assert not (run / "metrics.json").exists() and not (run / "adapter").exists()  # really interrupted mid-way
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert record.status == "running"  # nobody could record anything
    else:
        assert proc.returncode == 1, out.decode()
        assert record.status == "interrupted"
        assert "stopped by SIGTERM" in out.decode() and "--resume" in out.decode()
    steps = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert steps and steps[-1] < 120
    assert not list((run / "checkpoints").glob(".tmp-*")) or sig == signal.SIGKILL

    resumed = _train(project, "--resume")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out.decode()
    assert _only_run(project.parent) == run
    _assert_identical(run, reference)
    record = RUN_RECORD.load(run / "run.json")
    assert record.status == "completed" and [s.resumed for s in record.sessions] == [False, True]


def test_resume_without_an_unfinished_run_starts_a_new_one(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train ADAPTER --resume` is what a Kubernetes Job runs on every (re)start."""
    from vilms.trainers.trainer import train_adapter

    project = write_project(tmp_path / "proj", tiny_model, {"training": {"max_steps": 4}})
    run_id = train_adapter(project, "tiny-v1", resume=True, show_progress=False)
    assert "no unfinished run of this config to resume; starting a new run" in capsys.readouterr().err
    record = RUN_RECORD.load(tmp_path / "proj" / "artifacts" / run_id / "run.json")
    assert record.status == "completed" and [s.resumed for s in record.sessions] == [False]
    # a completed run is never resumed: the next --resume starts another run
    second = train_adapter(project, "tiny-v1", resume=True, show_progress=False)
    assert second != run_id
