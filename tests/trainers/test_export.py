"""Export: merged HF model, GGUF (llama.cpp logits match), GGUF LoRA, quantisation, Modelfile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.runs import write_run
from vilms.compiler.contracts.run_record import RUN_RECORD, VllmCheck
from vilms.compiler.errors import ActionError
from vilms.compiler.layout import Layout
from vilms.compiler.modelfile_syntax import parse
from vilms.trainers.chat_templates import TEMPLATES
from vilms.trainers.export.modelfile import render_modelfile
from vilms.trainers.export.vllm import check_adapter

from .conftest import write_project

PROMPT = [
    {"role": "system", "content": "You help customers."},
    {"role": "user", "content": "How do I reset my password?"},
    {"role": "assistant", "content": "Open settings, choose security."},
]


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(command, value) pairs from the compiler's Ollama-grammar parser."""
    names = {"model": "FROM", "adapter": "ADAPTER", "template": "TEMPLATE", "system": "SYSTEM"}
    return [(names.get(c.name, f"PARAMETER {c.name}"), c.args) for c in parse(text)]


def test_unrepresentable_values_are_refused() -> None:
    text = render_modelfile(TEMPLATES["chatml"], system='say "hi"\nthen')
    assert ("SYSTEM", 'say "hi"\nthen') in parse_modelfile(text)
    with pytest.raises(ActionError):
        render_modelfile(TEMPLATES["chatml"], system="carriage\rreturn")


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_modelfile_round_trips_every_template(name: str) -> None:
    template = TEMPLATES[name]
    parsed = parse_modelfile(render_modelfile(template, "./model.gguf", num_ctx=2048))
    assert parsed[0] == ("FROM", "./model.gguf")
    assert ("TEMPLATE", template.ollama) in parsed
    assert [v for k, v in parsed if k == "PARAMETER stop"] == list(template.stop)
    assert ("PARAMETER num_ctx", "2048") in parsed


def test_vllm_check() -> None:
    ok = check_adapter({"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"]})
    assert ok.compatible and ok.max_lora_rank == 16
    assert check_adapter({"r": 12}).max_lora_rank == 16
    bad = check_adapter({"r": 1024, "modules_to_save": ["lm_head"], "use_dora": True, "target_modules": ["lm_head"]})
    assert not bad.compatible and len(bad.problems) == 4


# ---------------------------------------------------------------- the real export (torch + llama.cpp)
@pytest.fixture(scope="module", params=["llama", "qwen2"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("peft")
    pytest.importorskip("llama_cpp")
    tiny_model = request.getfixturevalue("tiny_model" if request.param == "llama" else "tiny_qwen2")
    from vilms.trainers.export.gguf import write_llama_gguf
    from vilms.trainers.export.pipeline import export_run
    from vilms.trainers.trainer import train_adapter

    changes = {
        "training": {"max_steps": 30, "learning_rate": 0.01, "save_steps": 100, "eval_steps": 100},
        "lora": {
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            "use_rslora": True,
        },
    }
    changes["base_model"] = {"family": request.param}
    project = write_project(tmp_path_factory.mktemp("export") / "proj", tiny_model, changes)
    run_id = train_adapter(project, "tiny-v1", show_progress=False)
    section = export_run(Layout.of(project), run_id, gguf=True, quantize=["Q8_0"], outtype="f32")
    base_gguf = write_llama_gguf(tiny_model, tmp_path_factory.mktemp("base") / "base.gguf", "f32")
    return {
        "run": project.parent / "artifacts" / run_id,
        "section": section,
        "base_gguf": base_gguf,
        "tiny": tiny_model,
    }


def _hf_logits(model_dir: Path, ids: list[int]) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _llama_logits(path: Path, ids: list[int], lora: Path | None = None) -> Any:
    import llama_cpp
    import numpy as np

    kwargs = {"lora_path": str(lora)} if lora else {}
    # an f32 KV cache (GGML type 0; llama.cpp defaults to f16, ~1.4e-3 off on its own), so
    # the comparison measures the conversion, not the cache's precision
    llm = llama_cpp.Llama(model_path=str(path), logits_all=True, verbose=False, n_ctx=256, n_threads=1,
                          type_k=0, type_v=0, **kwargs)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)]), llm


def _ids(model_dir: Path) -> tuple[str, list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    text = tok.apply_chat_template(PROMPT, tokenize=False)
    return text, tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.heavy
def test_gguf_logits_match_merged_model(exported: dict[str, Any]) -> None:
    import numpy as np

    merged = exported["run"] / "merged"
    text, ids = _ids(merged)
    hf = _hf_logits(merged, ids)
    base = _hf_logits(exported["tiny"], ids)
    assert np.abs(hf - base).max() > 0.05  # the adapter changes the model, so a match means something
    gguf, llm = _llama_logits(exported["run"] / "gguf" / "model.f32.gguf", ids)
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids
    assert np.abs(gguf - hf).max() < 1e-4


@pytest.mark.heavy
def test_gguf_lora_on_base_matches_merged_model(exported: dict[str, Any]) -> None:
    import numpy as np

    merged = exported["run"] / "merged"
    _, ids = _ids(merged)
    hf = _hf_logits(merged, ids)
    with_lora, _ = _llama_logits(exported["base_gguf"], ids, exported["run"] / "gguf" / "adapter.gguf")
    assert np.abs(with_lora - hf).max() < 1e-4
    without, _ = _llama_logits(exported["base_gguf"], ids)
    assert np.abs(without - hf).max() > 0.05


@pytest.mark.heavy
def test_quantized_gguf_and_layout(exported: dict[str, Any]) -> None:
    import numpy as np

    run = exported["run"]
    files = exported["section"].files
    for name in (
        "merged/model.safetensors",
        "merged/config.json",
        "merged/tokenizer.json",
        "gguf/model.f32.gguf",
        "gguf/model.Q8_0.gguf",
        "gguf/adapter.gguf",
        "gguf/Modelfile",
    ):
        assert name in files, name
    assert (run / "gguf" / "model.gguf").read_bytes() == (run / "gguf" / "model.Q8_0.gguf").read_bytes()
    assert (run / "gguf" / "model.Q8_0.gguf").stat().st_size < (run / "gguf" / "model.f32.gguf").stat().st_size
    _, ids = _ids(run / "merged")
    q8, _ = _llama_logits(run / "gguf" / "model.Q8_0.gguf", ids)
    hf = _hf_logits(run / "merged", ids)
    assert np.abs(q8 - hf).max() < 0.5  # quantised: close, not exact
    parsed = parse_modelfile((run / "gguf" / "Modelfile").read_text())
    assert parsed[0] == ("FROM", "./model.gguf")
    assert ("TEMPLATE", TEMPLATES["chatml"].ollama) in parsed
    record = RUN_RECORD.load(run / "run.json")
    assert record.export == exported["section"]
    assert record.export.vllm == VllmCheck(compatible=True, max_lora_rank=8, problems=())
    config = json.loads((run / "merged" / "config.json").read_text())
    assert config.get("quantization_config") is None  # merged unquantized


@pytest.mark.heavy
def test_export_of_unfinished_run_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    from vilms.trainers.export.pipeline import export_run

    run_id = "tiny-v1-20261120T091500Z-1a2b3c"
    write_run(tmp_path, run_id, status="interrupted", gate=None)
    with pytest.raises(ActionError, match="run tiny-v1-20261120T091500Z-1a2b3c is interrupted, not completed") as info:
        export_run(Layout(tmp_path), run_id)
    assert info.value.hint == "finish it with `vilms train tiny-v1 --resume`"
