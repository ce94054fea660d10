"""QLoRA as the compiler writes it (NF4, double quant, bf16 compute) trains on CPU: issue 15, item 2."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from vilms.compiler.render.training import QLORA_QUANTIZATION

from .conftest import write_project

pytestmark = pytest.mark.heavy


def test_compiled_qlora_trains_on_cpu_and_loss_falls(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    import torch

    from vilms.trainers.trainer import train_adapter

    assert not torch.cuda.is_available()  # this is the CPU path
    changes = {"method": "qlora", "quantization": asdict(QLORA_QUANTIZATION),
               "training": {"max_steps": 40, "learning_rate": 0.01, "save_steps": 100, "eval_steps": 100},
               "lora": {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}}
    assert changes["quantization"]["bnb_4bit_compute_dtype"] == "bfloat16"
    project = write_project(tmp_path / "proj", tiny_model, changes)
    run_id = train_adapter(project, "tiny-v1", show_progress=False)
    metrics = json.loads((tmp_path / "proj" / "artifacts" / run_id / "metrics.json").read_text())
    losses = [loss for _, loss in metrics["train_loss"]["history"]]
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8 - 0.2, losses
