"""LoRA and QLoRA training on the tiny model: loss falls, artifacts and records are complete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vilms.compiler.contracts.run_record import RUN_RECORD
from vilms.compiler.contracts.training_config import TRAINING_CONFIG
from vilms.compiler.errors import ActionError, DatasetError
from vilms.compiler.layout import Layout
from vilms.compiler.runs import release_status
from vilms.trainers.approval import approve

from .conftest import QLORA, write_project

pytestmark = pytest.mark.heavy

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
FAST = {
    "training": {"max_steps": 60, "learning_rate": 0.01, "save_steps": 30, "eval_steps": 30},
    "lora": {"target_modules": ALL_LINEAR},
    "gate": {
        "max_eval_perplexity": 1.0e6,
        "regression": [{"prompt": "How do I reset my password?", "expect_substring": "zebra-unicorn", "expect_exact": None}],
        "on_fail": "approval",
    },
}


def falling(history: list[list[float]]) -> tuple[float, float]:
    losses = [loss for _, loss in history]
    k = max(3, len(losses) // 5)
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


@pytest.fixture(scope="session")
def lora_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    pytest.importorskip("peft")
    from vilms.trainers.trainer import train_adapter

    project = write_project(tmp_path_factory.mktemp("lora") / "proj", tiny_model, FAST)
    return project.parent, train_adapter(project, "tiny-v1", show_progress=False)


def test_lora_loss_falls_and_artifacts_are_complete(lora_run: tuple[Path, str]) -> None:
    root, run_id = lora_run
    run = root / "artifacts" / run_id
    metrics = json.loads((run / "metrics.json").read_text())
    first, last = falling(metrics["train_loss"]["history"])
    assert last < first - 0.3, (first, last)
    assert metrics["steps"] == 60 and len(metrics["train_loss"]["history"]) == 60
    assert metrics["eval_loss"] is not None and metrics["eval_perplexity"] > 1
    assert metrics["tokens_per_second"] > 0 and metrics["peak_rss_bytes"] > 50 * 2**20
    assert metrics["eval_history"][0][0] == 30
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run / "adapter" / "adapter_config.json").read_text())["r"] == 8
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000030"]
    assert sorted(p.name for p in (run / "checkpoints" / "step-000030").iterdir()) == [
        "optimizer.pt",
        "rng.pt",
        "scheduler.pt",
        "state.json",
        "trainable.safetensors",
    ]
    record = RUN_RECORD.load(run / "run.json")
    cfg_bytes = (root / "generated" / "training" / "tiny-v1.yaml").read_bytes()
    import hashlib

    assert (run / "training.yaml").read_bytes() == cfg_bytes
    assert record.config_sha256 == hashlib.sha256(cfg_bytes).hexdigest()
    assert record.dataset.sha256 == hashlib.sha256((root / "data" / "support.jsonl").read_bytes()).hexdigest()
    assert record.base_model.source == "file:models/tiny"
    assert record.libraries["torch"] and record.libraries["peft"] and record.libraries["transformers"]
    assert record.hardware.profile == "laptop" and record.hardware.host.torch_device == "cpu"
    assert record.status == "completed" and record.finished_at is not None
    assert record.metrics is not None and record.metrics.steps == 60 and record.metrics.train_examples == 56
    # the gate: perplexity ceiling met, the regression answer cannot contain 'zebra-unicorn' → approval needed
    gate = record.gate
    assert gate is not None and gate.perplexity_passed is True
    assert gate.regression[0].passed is False
    assert gate.status == "needs_approval"
    status = release_status(root, run_id)
    assert not status.releasable


# an adapter that names no hardware profile: it trains on the machine the trainer runs on
NO_HARDWARE = """\
apiVersion: vilms/v1
project: acme
models:
  tiny: {source: "file:models/tiny", family: llama, context: 256, chat_template: chatml}
datasets:
  support: {path: data/support.jsonl, format: chat}
adapters:
  tiny-v1:
    base: tiny
    dataset: support
    method: lora
    lora: {r: 4, target_modules: [q_proj, v_proj]}
    training: {max_steps: 4, batch_size: 4, seq_len: 128, save_steps: 100, eval_steps: 100, gradient_checkpointing: false}
"""


def test_an_adapter_without_hardware_builds_and_trains(tiny_model: Path, tmp_path: Path, vilms: Any) -> None:
    """Regression: `vilms build` wrote hardware: null and `vilms train` refused it
    ("hardware: expected a mapping, got null")."""
    pytest.importorskip("peft")
    project = write_project(tmp_path / "proj", tiny_model)  # the model link and the dataset
    project.write_text(NO_HARDWARE)
    assert (built := vilms("build", "-f", str(project))).code == 0, built.err
    config = TRAINING_CONFIG.load(Layout.of(project).training_config("tiny-v1"))
    assert config.hardware is None
    trained = vilms("train", "tiny-v1", "-f", str(project), "--no-progress", timeout=300,
                        env={"HF_HUB_OFFLINE": "1", "VILMS_TORCH_THREADS": "1"})
    assert trained.code == 0, trained.err
    (run,) = (tmp_path / "proj" / "artifacts").iterdir()
    assert f"tiny-v1: run {run.name} completed; gate passed" in trained.out
    record = RUN_RECORD.load(run / "run.json")
    assert record.hardware.profile is None and record.hardware.host.torch_device == "cpu"
    assert record.metrics is not None and record.metrics.steps == 4


def test_approve_releases_a_run(lora_run: tuple[Path, str], tmp_path: Path) -> None:
    import shutil

    root, run_id = lora_run
    copy = tmp_path / "proj"
    shutil.copytree(
        root / "artifacts" / run_id, copy / "artifacts" / run_id, ignore=shutil.ignore_patterns("merged", "gguf")
    )
    decision, _ = approve(Layout(copy), run_id, "reviewed the answers by hand")
    assert decision.reason == "reviewed the answers by hand" and decision.who
    status = release_status(copy, run_id)
    assert status.gate_status == "approved" and status.releasable
    with pytest.raises(ActionError, match="already approved"):
        approve(Layout(copy), run_id, "again")


def test_qlora_trains_in_4bit_and_loss_falls(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from vilms.trainers.trainer import train_adapter

    project = write_project(
        tmp_path / "proj",
        tiny_model,
        {
            **FAST,
            "method": "qlora",
            "quantization": QLORA,
            "training": {**FAST["training"], "max_steps": 40, "save_steps": 100},
        },
    )
    run_id = train_adapter(project, "tiny-v1", show_progress=False)
    metrics = json.loads((tmp_path / "proj" / "artifacts" / run_id / "metrics.json").read_text())
    first, last = falling(metrics["train_loss"]["history"])
    assert last < first - 0.2, (first, last)
    record = RUN_RECORD.load(tmp_path / "proj" / "artifacts" / run_id / "run.json")
    assert record.method == "qlora" and record.libraries["bitsandbytes"]


def test_qlora_model_really_is_4bit(tiny_model: Path) -> None:
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    from vilms.compiler.contracts.training_config import QuantSpec
    from vilms.trainers.loader import ModelSource, load_base_model

    model = load_base_model(ModelSource(str(tiny_model), None, True), QuantSpec(**QLORA))
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear4bit)
    assert layer.weight.quant_state.quant_type == "nf4"
    assert layer.weight.quant_state.nested  # double quantisation


def _no_artifacts(root: Path) -> bool:
    return not (root / "artifacts").exists() or not any((root / "artifacts").iterdir())


def test_bad_dataset_is_refused_before_any_artifact(tiny_model: Path, tmp_path: Path) -> None:
    from vilms.trainers.trainer import train_adapter

    project = write_project(
        tmp_path / "proj",
        tiny_model,
        rows=[{"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}],
    )
    with pytest.raises(DatasetError) as info:
        train_adapter(project, "tiny-v1", show_progress=False)
    assert info.value.diagnostics[0].render() == (
        "data/support.jsonl:1:1: messages[1].role: unknown role 'bot' (expected system, user, assistant)"
    )
    assert _no_artifacts(tmp_path / "proj")


def test_pinned_hash_mismatch_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    from vilms.trainers.trainer import train_adapter

    project = write_project(tmp_path / "proj", tiny_model, {"dataset": {"sha256": "0" * 64}})
    with pytest.raises(DatasetError, match="problem") as info:
        train_adapter(project, "tiny-v1", show_progress=False)
    assert "does not match the pinned 0000" in info.value.render()
    assert _no_artifacts(tmp_path / "proj")


def test_mlflow_missing_is_a_clear_error(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from vilms.trainers.trainer import train_adapter

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the track extra were not installed

    project = write_project(
        tmp_path / "proj", tiny_model, {"tracking": {"mlflow": {"tracking_uri": "file:mlruns", "tracking_uri_env": None, "experiment": "acme", "registered_model": "tiny-v1", "registry_alias": "production"}}}
    )
    with pytest.raises(ActionError, match="mlflow package is not installed"):
        train_adapter(project, "tiny-v1", show_progress=False)
    assert _no_artifacts(tmp_path / "proj")


def test_assistant_only_labels(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    from vilms.trainers.encode import IGNORE_INDEX, encode_row

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    row: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Where is my order?"},
            {"role": "assistant", "content": "On its way."},
            {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": "Welcome."},
        ]
    }
    ex = encode_row(tok, row, "chat", 512)
    learned = tok.decode([t for t, l in zip(ex.input_ids, ex.labels, strict=True) if l != IGNORE_INDEX])
    assert learned == "On its way.<|im_end|>\nWelcome.<|im_end|>\n"
    assert tok.decode(ex.input_ids) == tok.apply_chat_template(row["messages"], tokenize=False)


def test_qlora_gradients_survive_an_evaluation(tiny_model: Path, tmp_path: Path) -> None:
    """Evaluation (eval mode, no grad) must not change how the next training step backpropagates."""
    pytest.importorskip("bitsandbytes")
    import torch

    from vilms.trainers import batching
    from vilms.trainers.job import job_for
    from vilms.trainers.recipe import LoraRecipe
    from vilms.trainers.trainer import preflight

    project = write_project(
        tmp_path / "proj", tiny_model, {"method": "qlora", "quantization": QLORA, "lora": {"lora_dropout": 0.0}}
    )
    job = job_for(Layout.of(project), "tiny-v1")
    recipe = LoraRecipe(job, preflight(job), tmp_path / "run", show_progress=False)
    recipe.setup()
    batch = batching.collate(recipe.train_examples[:4], recipe.tokenizer.pad_token_id)

    def grads() -> dict[str, torch.Tensor]:
        recipe.model.zero_grad(set_to_none=True)
        recipe.model(**batch).loss.backward()
        return {n: p.grad.clone() for n, p in recipe.model.named_parameters() if p.requires_grad}

    before = grads()
    assert recipe.evaluate() is not None
    after = grads()
    for name, grad in before.items():
        assert torch.allclose(grad, after[name], atol=1e-6), name
    # earlier layers receive gradient through the frozen 4-bit base layers above them
    assert any("layers.0." in n and g.abs().sum() > 0 for n, g in after.items())
