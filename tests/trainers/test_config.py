"""The training-config contract is loaded strictly, with located errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.trainers.config import load_training_config

from .conftest import BASE_CONFIG, QLORA, merge


def write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "generated" / "training" / "tiny-v1.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")
    return path


def problems(tmp_path: Path, config: dict) -> list[str]:
    with pytest.raises(InvalidInputError) as info:
        load_training_config(write(tmp_path, config))
    return [d.render() for d in info.value.diagnostics]


def test_valid_config_loads(tmp_path: Path) -> None:
    cfg = load_training_config(write(tmp_path, merge(BASE_CONFIG, {"method": "qlora", "quantization": QLORA})))
    assert cfg.adapter == "tiny-v1" and cfg.method == "qlora"
    assert cfg.quantization is not None and cfg.quantization.bnb_4bit_quant_type == "nf4"
    assert cfg.lora.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert cfg.project_root == tmp_path
    assert cfg.dataset_path == tmp_path / "data" / "support.jsonl"
    assert len(cfg.sha256) == 64


def test_unknown_keys_and_wrong_types_are_located(tmp_path: Path) -> None:
    config = merge(BASE_CONFIG, {"training": {"batch_sise": 4, "seed": "seven"}, "lora": {"r": 8.5}})
    errs = problems(tmp_path, config)
    text = "\n".join(errs)
    assert "training.batch_sise: unknown key 'batch_sise' (did you mean 'batch_size'?)" in text
    assert "training.seed: expected an integer, got a string" in text
    assert "lora.r: expected an integer, got a number" in text
    # every diagnostic carries the file and a line number
    for err in errs:
        assert err.startswith(str(tmp_path / "generated" / "training" / "tiny-v1.yaml") + ":")
        assert int(err.split(":")[1]) > 0


def test_line_numbers_point_at_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, merge(BASE_CONFIG, {"method": "sft"}))
    lines = path.read_text().splitlines()
    expected = next(i for i, l in enumerate(lines, 1) if l.startswith("method:"))
    with pytest.raises(InvalidInputError) as info:
        load_training_config(path)
    (diag,) = info.value.diagnostics
    assert (diag.line, diag.path) == (expected, "method")
    assert diag.message == "expected one of lora, qlora, got 'sft'"


def test_semantic_rules(tmp_path: Path) -> None:
    config = merge(
        BASE_CONFIG,
        {
            "method": "qlora",
            "quantization": None,
            "dataset": {"sha256": "xyz", "eval_fraction": 1.5},
            "gate": {"regression": [{"prompt": "hi"}]},
            "base_model": {"source": "ollama:llama3"},
        },
    )
    text = "\n".join(problems(tmp_path, config))
    assert "method: qlora needs a quantization section" in text
    assert "dataset.sha256: must be 64 lowercase hex digits or null" in text
    assert "dataset.eval_fraction: must be in [0, 1)" in text
    assert "gate.regression[0]: give exactly one of expect_substring, expect_exact" in text
    assert "base_model.source: expected hf:<repo>[@rev] or file:<path>, got 'ollama:llama3'" in text


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="training config not found"):
        load_training_config(tmp_path / "nope.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: vilms/v1\n  kind: [\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as info:
        load_training_config(path)
    assert "bad.yaml:2:7: YAML syntax error" in info.value.render()
