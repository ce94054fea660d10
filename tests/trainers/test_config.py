"""The training config (kind TrainingConfig) is read only through its contract: a generated
config loads in the trainer; a broken one gives exact located messages, before any model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vilms.compiler.contracts.training_config import TRAINING_CONFIG
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.compiler.layout import Layout
from vilms.trainers.job import job_for, read_job
from vilms.trainers.tiny import tiny_training_config

from .conftest import BASE_CONFIG, QLORA, merge

SHOWN = "generated/training/tiny-v1.yaml"


def write(tmp_path: Path, config: dict | str) -> Path:
    path = Layout(tmp_path).training_config("tiny-v1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=True), encoding="utf-8")
    return path


def problems(tmp_path: Path, config: dict | str) -> tuple[list[str], str | None]:
    path = write(tmp_path, config)
    with pytest.raises(InvalidInputError) as info:
        TRAINING_CONFIG.load(path, SHOWN)
    return [d.render().split("\n")[0] for d in info.value.diagnostics], info.value.hint


def at(tmp_path: Path, text: str, part: str | None = None) -> str:
    """``file:line:col`` of the first line holding ``text``, at the column where ``part`` (default: ``text``) starts."""
    lines = Layout(tmp_path).training_config("tiny-v1").read_text().splitlines()
    line = next(n for n, l in enumerate(lines, 1) if text in l)
    return f"{SHOWN}:{line}:{lines[line - 1].index(part or text) + 1}"


def test_the_tiny_config_round_trips_through_the_contract(tmp_path: Path) -> None:
    path = write(tmp_path, TRAINING_CONFIG.dump(tiny_training_config()).decode())
    assert TRAINING_CONFIG.load(path) == tiny_training_config()


def test_a_valid_config_loads_as_a_job(tmp_path: Path) -> None:
    write(tmp_path, merge(BASE_CONFIG, {"method": "qlora", "quantization": QLORA}))
    job = job_for(Layout(tmp_path), "tiny-v1")
    cfg = job.config
    assert cfg.adapter == "tiny-v1" and cfg.method == "qlora"
    assert cfg.quantization is not None and cfg.quantization.bnb_4bit_quant_type == "nf4"
    assert cfg.lora.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert job.root == tmp_path and job.dataset_path == tmp_path / "data" / "support.jsonl"
    assert len(job.sha256) == 64


def test_no_hardware_profile_is_a_config(tmp_path: Path) -> None:
    """vilms.yaml may name no hardware for an adapter: the config says null and still loads."""
    write(tmp_path, merge(BASE_CONFIG, {"hardware": None}))
    assert job_for(Layout(tmp_path), "tiny-v1").config.hardware is None


def test_unknown_key_and_wrong_types_are_located(tmp_path: Path) -> None:
    config = merge(BASE_CONFIG, {"training": {"batch_sise": 4, "seed": "seven"}, "lora": {"r": 8.5}})
    errs, hint = problems(tmp_path, config)
    assert errs == [
        f"{at(tmp_path, 'r: 8.5', '8.5')}: lora.r: must be an integer, not a number",
        f"{at(tmp_path, 'batch_sise')}: training.batch_sise: unknown key 'batch_sise' (did you mean 'batch_size'?)",
        f"{at(tmp_path, 'seven')}: training.seed: must be an integer, not a string",
    ]
    assert hint == "ViLMS writes this file; do not edit it by hand: run `vilms build`"


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    config = merge(BASE_CONFIG, {})
    del config["hardware"]
    del config["training"]["seed"]
    errs, _ = problems(tmp_path, config)
    assert errs == [
        f"{SHOWN}:1:1: missing required key 'hardware'",
        f"{at(tmp_path, 'training:')}: training: missing required key 'seed'",
    ]


def test_another_api_version_asks_for_a_rebuild(tmp_path: Path) -> None:
    errs, hint = problems(tmp_path, merge(BASE_CONFIG, {"apiVersion": "vilms/v1"}))
    assert errs == [f"{at(tmp_path, 'vilms/v1')}: apiVersion: written by another ViLMS version (apiVersion 'vilms/v1'); "
                    "this ViLMS reads contracts.vilms.dev/v1"]
    assert hint == "run `vilms build` with this version of ViLMS"


def test_rules_the_old_trainer_checked_are_the_contract_s(tmp_path: Path) -> None:
    config = merge(
        BASE_CONFIG,
        {
            "method": "qlora",
            "quantization": None,
            "dataset": {"sha256": "xyz", "eval_fraction": 1.5},
            "gate": {"regression": [{"prompt": "hi", "expect_substring": None, "expect_exact": None}]},
            "base_model": {"source": "ollama:llama3"},
            "training": {"warmup_ratio": -0.1, "save_steps": 0, "learning_rate": 0},
            "lora": {"target_modules": []},
        },
    )
    errs, _ = problems(tmp_path, config)
    assert [e.split(": ", 1)[1] for e in errs] == [
        "base_model.source: 'ollama:llama3' is not a valid source",
        "dataset.eval_fraction: must be at most 0.5 (got 1.5)",
        "dataset.sha256: 'xyz' is not a valid sha256",
        "lora.target_modules: must list at least 1 item(s)",
        "training.learning_rate: must be greater than 0 (got 0)",
        "training.save_steps: must be at least 1 (got 0)",
        "training.warmup_ratio: must be at least 0 (got -0.1)",
    ]
    # cross-field rules run on a file whose shapes are right
    config = merge(BASE_CONFIG, {"method": "qlora", "quantization": None,
                                 "gate": {"regression": [{"prompt": "hi", "expect_substring": "a", "expect_exact": "a"}]}})
    errs, _ = problems(tmp_path, config)
    assert errs == [
        f"{at(tmp_path, '- expect_exact', 'expect_exact')}: gate.regression[0]: give exactly one of expect_substring, expect_exact",
        f"{at(tmp_path, 'quantization: null', 'null')}: quantization: method qlora needs a quantization section with load_in_4bit: true",
    ]
    errs, _ = problems(tmp_path, merge(BASE_CONFIG, {"quantization": QLORA}))
    assert [e.split(": ", 1)[1] for e in errs] == ["quantization: must be null for method lora"]
    errs, _ = problems(tmp_path, merge(BASE_CONFIG, {"method": "qlora", "quantization": {**QLORA, "load_in_4bit": False}}))
    assert [e.split(": ", 1)[1] for e in errs] == ["quantization.load_in_4bit: method qlora needs load_in_4bit: true"]


def test_non_finite_numbers_are_refused(tmp_path: Path) -> None:
    """YAML can spell .nan and .inf and JSON Schema cannot refuse them; the loader every ViLMS
    file goes through does, each where it stands."""
    text = yaml.safe_dump(BASE_CONFIG, sort_keys=True)
    text = text.replace("learning_rate: 0.003", "learning_rate: .nan").replace("max_eval_perplexity: null", "max_eval_perplexity: .inf")
    errs, _ = problems(tmp_path, text)
    assert errs == [
        f"{at(tmp_path, '.inf')}: gate.max_eval_perplexity: .inf is not a finite number",
        f"{at(tmp_path, '.nan')}: training.learning_rate: .nan is not a finite number",
    ]


def test_missing_config_names_the_adapters_that_exist(tmp_path: Path) -> None:
    write(tmp_path, BASE_CONFIG)
    with pytest.raises(ActionError) as info:
        job_for(Layout(tmp_path), "tiny-v2")
    assert info.value.message == (
        f"training config not found: {tmp_path / 'generated' / 'training' / 'tiny-v2.yaml'} (did you mean 'tiny-v1'?)"
    )
    assert "vilms build" in (info.value.hint or "") and "built here: tiny-v1" in (info.value.hint or "")


def test_a_config_of_another_adapter_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, merge(BASE_CONFIG, {"adapter": "other"}))
    path.rename(path.with_name("tiny-v2.yaml"))
    with pytest.raises(ActionError, match="is for adapter 'other', not 'tiny-v2'"):
        job_for(Layout(tmp_path), "tiny-v2")


def test_bad_yaml_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: vilms/v1\n  kind: [\n")
    with pytest.raises(InvalidInputError) as info:
        read_job(path, tmp_path)
    assert f"{path}:2:7: YAML syntax error" in info.value.render()
