#!/usr/bin/env python3
"""How close llama.cpp's logits are to the merged HF model's, by llama.cpp's KV-cache type.

Trains the tiny llama (and qwen2) for 30 steps, exports the run (merged fp32, f32 GGUF), then
evaluates one chat prompt in transformers (fp32) and in llama.cpp (llama-cpp-python) with the
KV cache in f16 (llama.cpp's default, ``type_k=type_v=1``) and in f32 (``type_k=type_v=0``),
printing max |Δlogit| over every position and vocabulary entry. The same comparison, f32 only,
is asserted in tests/trainers/test_export.py (test_gguf_logits_match_merged_model, < 1e-4).

    python bench/export_logits.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VILMS_TORCH_THREADS", "1")

PROMPT = [
    {"role": "system", "content": "You help customers."},
    {"role": "user", "content": "How do I reset my password?"},
    {"role": "assistant", "content": "Open settings, choose security."},
]
KV_TYPES = {"f16 (default)": 1, "f32": 0}  # GGML types


def measure(arch: str, folder: Path) -> dict[str, float]:
    import llama_cpp
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vilms.compiler.layout import Layout
    from vilms.trainers.export.pipeline import export_run
    from vilms.trainers.tiny import build_tiny_llama, write_tiny_project
    from vilms.trainers.trainer import train_adapter

    model = build_tiny_llama(folder / "model", arch=arch)
    changes = {"training": {"max_steps": 30, "learning_rate": 0.01, "save_steps": 100, "eval_steps": 100},
               "lora": {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
               "base_model": {"family": arch}}
    project = write_tiny_project(folder / "proj", model, changes)
    run_id = train_adapter(project, "tiny-v1", show_progress=False)
    export_run(Layout.of(project), run_id, gguf=True, quantize=[], outtype="f32")
    run = project.parent / "artifacts" / run_id
    tok = AutoTokenizer.from_pretrained(str(run / "merged"))
    ids = tok(tok.apply_chat_template(PROMPT, tokenize=False), add_special_tokens=False)["input_ids"]
    hf_model = AutoModelForCausalLM.from_pretrained(str(run / "merged"), dtype=torch.float32)
    with torch.no_grad():
        hf = hf_model(torch.tensor([ids])).logits[0].numpy()
    out = {}
    for name, kv in KV_TYPES.items():
        llm = llama_cpp.Llama(model_path=str(run / "gguf" / "model.f32.gguf"), logits_all=True, verbose=False,
                              n_ctx=256, n_threads=1, type_k=kv, type_v=kv)
        llm.eval(ids)
        out[name] = float(np.abs(np.array(llm.scores[: len(ids)]) - hf).max())
        llm.close()
    out["|logit| max"] = float(np.abs(hf).max())
    return out


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vilms-bench-logits-") as tmp:
        for arch in ("llama", "qwen2"):
            result = measure(arch, Path(tmp) / arch)
            print(f"{arch}: max |Δlogit| llama.cpp vs HF (f32 GGUF): "
                  + ", ".join(f"KV {k} {v:.1e}" for k, v in result.items() if k.startswith(("f16", "f32")))
                  + f" (largest |logit| {result['|logit| max']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
