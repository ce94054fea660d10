"""The CPU planner's activation count (compiler/memory/cpu_training.py) against what autograd
really keeps for the trainer's model: fp32, SDPA attention, PEFT LoRA (issue 15, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vilms.compiler.contracts.training_config import LoraSpec
from vilms.compiler.memory.cpu_training import saved_per_token_layer
from vilms.compiler.memory.shapes import Shape

pytestmark = pytest.mark.heavy

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR = (*ATTENTION, "gate_proj", "up_proj", "down_proj")


def saved_bytes(layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int, targets: tuple[str, ...],
                dropout: float, tokens: tuple[int, int]) -> int:
    """Bytes autograd saves in one forward of a PEFT llama (parameters excluded), deduplicated by storage."""
    import torch
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from vilms.trainers.loader import peft_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=384, hidden_size=hidden, intermediate_size=intermediate,
                                         num_hidden_layers=layers, num_attention_heads=heads,
                                         num_key_value_heads=kv_heads, use_cache=False))
    assert model.config._attn_implementation == "sdpa"  # the trainer's default, which the planner models
    model = get_peft_model(model, peft_config(LoraSpec(r=8, lora_alpha=16, lora_dropout=dropout, target_modules=targets,
                                                       bias="none", use_rslora=False)))
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in params:
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        return t

    ids = torch.randint(5, 384, tokens)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
    return sum(seen.values())


@pytest.mark.parametrize("hidden,intermediate,heads,kv_heads,targets,dropout", [
    (128, 256, 4, 2, ATTENTION, 0.05),  # the tiny llama, vilms' default LoRA
    (128, 512, 4, 4, ATTENTION, 0.0),  # wider MLP, no GQA, no dropout
    (64, 224, 8, 2, ALL_LINEAR, 0.05),  # 3.5·h MLP as in Llama, every projection
])
def test_saved_activations_per_layer_match_autograd(hidden: int, intermediate: int, heads: int, kv_heads: int,
                                                    targets: tuple[str, ...], dropout: float) -> None:
    b, s = 2, 128
    # two layers more minus two layers fewer: embeddings, final norm and logits cancel out
    per_layer = (saved_bytes(4, hidden, intermediate, heads, kv_heads, targets, dropout, (b, s))
                 - saved_bytes(2, hidden, intermediate, heads, kv_heads, targets, dropout, (b, s))) / 2
    shape = Shape(layers=4, hidden=hidden, heads=heads, kv_heads=kv_heads, head_dim=hidden // heads,
                  intermediate=intermediate, vocab=384, tied=False)
    planned = 4 * b * s * saved_per_token_layer(shape, {"r": 8, "dropout": dropout, "target_modules": list(targets)})
    assert abs(planned - per_layer) / per_layer <= 0.05, (planned, per_layer)


def test_the_trainer_loads_fp32_sdpa_on_cpu(tiny_model: Path) -> None:
    import torch

    from vilms.trainers.loader import ModelSource, load_base_model

    model = load_base_model(ModelSource(str(tiny_model), None, True))
    assert model.config._attn_implementation == "sdpa"
    assert {p.dtype for p in model.parameters()} == {torch.float32}
