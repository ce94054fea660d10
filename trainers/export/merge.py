"""Merge a trained adapter into its base in 32- or 16-bit — never into a 4-bit model.

The base is reloaded unquantized (even for a QLoRA run), the adapter applied and
``merge_and_unload()`` folds it into the weights; the result and the training tokenizer
(with its chat template) are saved as HF safetensors, atomically.
"""

from __future__ import annotations

from pathlib import Path

from vilms.compiler.errors import ActionError

from ..atomic import atomic_directory
from ..loader import ModelSource, load_base_model

DTYPES = ("float32", "bfloat16", "float16")


def merge_adapter(source: ModelSource, adapter_dir: Path, out_dir: Path, dtype: str = "float32") -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    if dtype not in DTYPES:
        raise ActionError(f"merge dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ActionError(f"no trained adapter in {adapter_dir}", hint="did the run complete?")
    base = load_base_model(source, quant=None, dtype=getattr(torch, dtype))
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    merged = model.merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    with atomic_directory(out_dir) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
    return out_dir
