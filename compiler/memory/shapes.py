"""Model shapes: a llama-style decoder's dimensions, from its architecture or borrowed by size.

``REFERENCE_SHAPES`` lends a published architecture to a model that declares only ``params``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vilms.compiler.plan import Model
from vilms.compiler.record import record

KV_BYTES = 2  # f16/bf16 KV cache: Ollama/llama.cpp default f16, vLLM kv-cache-dtype auto
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@record
class Shape:
    """A llama-style dense decoder, as in config.json."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    source: str = "architecture"  # or the published model it was borrowed from

    @classmethod
    def of(cls, arch: Mapping[str, Any], source: str = "architecture") -> Shape:
        heads = int(arch["heads"])
        hidden = int(arch["hidden_size"])
        return cls(
            layers=int(arch["layers"]), hidden=hidden, heads=heads,
            kv_heads=int(arch.get("kv_heads") or heads),
            head_dim=int(arch.get("head_dim") or hidden // heads),
            intermediate=int(arch["intermediate_size"]), vocab=int(arch["vocab_size"]),
            tied=bool(arch.get("tie_word_embeddings", False)), source=source,
        )

    @property
    def linear_params(self) -> int:
        """P_lin = L·[h·a·d + 2·h·kv·d + a·d·h + 3·h·f]."""
        h, a, kv, d, f = self.hidden, self.heads, self.kv_heads, self.head_dim, self.intermediate
        return self.layers * (h * a * d + 2 * h * kv * d + a * d * h + 3 * h * f)

    @property
    def embedding_params(self) -> int:
        """P_emb + P_head (the head is free when tied to the embeddings)."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def norm_params(self) -> int:
        return self.hidden * (2 * self.layers + 1)

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params + self.norm_params

    @property
    def kv_bytes_per_token(self) -> int:
        """2 (K and V) · L · kv · d · 2 bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * KV_BYTES

    def module(self, name: str) -> tuple[int, int, int] | None:
        """(d_in, d_out, how many) of a LoRA target module, None when unknown."""
        h, a, kv, d, f, L = self.hidden, self.heads, self.kv_heads, self.head_dim, self.intermediate, self.layers
        name = name.split(".")[-1]
        table = {
            "q_proj": (h, a * d, L), "k_proj": (h, kv * d, L), "v_proj": (h, kv * d, L),
            "o_proj": (a * d, h, L), "gate_proj": (h, f, L), "up_proj": (h, f, L), "down_proj": (f, h, L),
            "qkv_proj": (h, (a + 2 * kv) * d, L), "gate_up_proj": (h, 2 * f, L),
            "embed_tokens": (self.vocab, h, 1), "lm_head": (h, self.vocab, 1),
        }
        return table.get(name)

    def lora_params(self, r: int, targets: tuple[str, ...] | list[str]) -> int:
        """N_lora = Σ_targets r·(d_in + d_out)·L; unknown module names count as h×h."""
        total = 0
        for target in targets:
            d_in, d_out, count = self.module(target) or (self.hidden, self.hidden, self.layers)
            total += r * (d_in + d_out) * count
        return total

    def full_params(self, module: str) -> int:
        """Parameters of a module trained in full (``modules_to_save``)."""
        found = self.module(module)
        if found is None:
            return self.hidden * self.layers  # norms and other small per-layer modules
        d_in, d_out, count = found
        return d_in * d_out * count


# Published architectures used when a model declares `params` but no `architecture`: the
# smallest entry whose size is ≥ the model's. Qwen3 and Llama-3.1 config.json values; the
# KV cache per token they imply (112–504 KiB) is at the high end of current GQA models,
# so the fallback errs towards "does not fit".
REFERENCE_SHAPES: tuple[tuple[float, Shape], ...] = (
    (1.0e9, Shape(28, 1024, 16, 8, 128, 3072, 151936, True, "Qwen3-0.6B")),
    (2.5e9, Shape(28, 2048, 16, 8, 128, 6144, 151936, True, "Qwen3-1.7B")),
    (5.0e9, Shape(36, 2560, 32, 8, 128, 9728, 151936, True, "Qwen3-4B")),
    (10e9, Shape(36, 4096, 32, 8, 128, 12288, 151936, False, "Qwen3-8B")),
    (20e9, Shape(40, 5120, 40, 8, 128, 17408, 151936, False, "Qwen3-14B")),
    (40e9, Shape(64, 5120, 64, 8, 128, 25600, 151936, False, "Qwen3-32B")),
    (90e9, Shape(80, 8192, 64, 8, 128, 28672, 128256, False, "Llama-3.1-70B")),
    (math.inf, Shape(126, 16384, 128, 8, 128, 53248, 128256, False, "Llama-3.1-405B")),
)


@record
class Sizing:
    """Parameter split of one model and where it came from."""

    params: int
    linear: int  # P_lin (quantizable)
    rest: int  # embeddings, head, norms (kept 16-bit by GPTQ/AWQ/bitsandbytes)
    shape: Shape
    exact: bool  # False: shape borrowed from REFERENCE_SHAPES


def sizing(model: Model) -> Sizing | None:
    """The model's parameter split; None when neither architecture nor params is known."""
    if model.architecture is not None:
        shape = Shape.of(model.architecture)
        return Sizing(shape.params, shape.linear_params, shape.params - shape.linear_params, shape, True)
    if model.params is None:
        return None
    shape = next(s for limit, s in REFERENCE_SHAPES if model.params <= limit)
    rest = min(shape.embedding_params + shape.norm_params, model.params // 2)
    return Sizing(model.params, model.params - rest, rest, shape, False)
