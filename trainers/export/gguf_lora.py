"""Write a PEFT LoRA adapter as a GGUF LoRA for llama.cpp (and Ollama ``ADAPTER``).

Follows llama.cpp's ``convert_lora_to_gguf.py``: ``general.type = adapter``,
``adapter.type = lora``, ``adapter.lora.alpha``; tensors ``blk.N.<base>.weight.lora_a``
(numpy shape ``(r, in)``) and ``.lora_b`` (``(out, r)``). The q/k rope permutation of the
base model (llama only) applies to the *output rows*, i.e. to ``lora_b`` only. llama.cpp scales by
``alpha / r``; an rsLoRA adapter (``alpha / sqrt(r)``) is written with
``alpha·sqrt(r)`` so the product is the same.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from vilms.compiler.errors import ActionError

from .gguf import MODULE_NAMES, gguf_arch, gguf_writer, head_counts, load_hparams, needs_rope_permutation, permute_rows

_NAME = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


def effective_alpha(adapter_config: dict[str, Any]) -> float:
    alpha = float(adapter_config["lora_alpha"])
    if adapter_config.get("use_rslora"):
        return alpha * math.sqrt(int(adapter_config["r"]))
    return alpha


def write_lora_gguf(adapter_dir: Path, base_dir: Path, out_path: Path) -> Path:
    import gguf
    import numpy as np
    from safetensors import safe_open

    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if adapter_config.get("rank_pattern") or adapter_config.get("alpha_pattern"):
        raise ActionError("GGUF LoRA export does not support per-module rank_pattern/alpha_pattern")
    if adapter_config.get("use_dora"):
        raise ActionError("GGUF LoRA export does not support DoRA adapters")
    config = load_hparams(base_dir)
    n_head, n_kv = head_counts(config)
    permute = needs_rope_permutation(config)
    pairs: dict[str, dict[str, Any]] = {}
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="numpy") as handle:
        for name in handle.keys():
            match = _NAME.match(name)
            if not match or match.group(2) not in MODULE_NAMES:
                raise ActionError(
                    f"GGUF LoRA export: unsupported adapter tensor {name!r}",
                    hint="only attention/MLP projections (q,k,v,o,gate,up,down) can be exported",
                )
            layer, module, which = match.groups()
            base = f"blk.{layer}.{MODULE_NAMES[module]}.weight"
            data = handle.get_tensor(name).astype(np.float32)
            if permute and which == "B" and module == "q_proj":
                data = permute_rows(data, n_head)
            elif permute and which == "B" and module == "k_proj":
                data = permute_rows(data, n_kv)
            pairs.setdefault(base, {})[which] = np.ascontiguousarray(data)
    incomplete = [b for b, p in pairs.items() if set(p) != {"A", "B"}]
    if incomplete or not pairs:
        raise ActionError(f"adapter in {adapter_dir} has no complete lora_A/lora_B pairs")

    with gguf_writer(out_path, gguf_arch(config)) as writer:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, effective_alpha(adapter_config))
        for base in sorted(pairs, key=_order):
            writer.add_tensor(base + ".lora_a", pairs[base]["A"])
            writer.add_tensor(base + ".lora_b", pairs[base]["B"])
    return out_path


def _order(name: str) -> tuple[int, str]:
    return int(name.split(".")[1]), name
