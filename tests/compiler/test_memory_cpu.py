"""Properties of the CPU training estimate (compiler/memory/cpu_training.py) over random
llama shapes and batches: it never claims less than what autograd keeps, grows with every
dimension inside one allocator regime, and QLoRA only adds its dequantisation copies."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vilms.compiler.memory.cpu_training import (
    FP32,
    HEAP,
    MMAP,
    MMAP_THRESHOLD_MAX,
    cpu_activations,
    qlora_layer_copies,
    saved_per_token_layer,
)
from vilms.compiler.memory.shapes import LINEAR_MODULES, Shape


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    head_dim = draw(st.sampled_from([16, 32, 64, 128]))
    kv = draw(st.integers(1, 8))
    heads = kv * draw(st.integers(1, 8))
    return Shape(layers=draw(st.integers(1, 80)), hidden=heads * head_dim, heads=heads, kv_heads=kv, head_dim=head_dim,
                 intermediate=draw(st.integers(1, 64)) * 64, vocab=draw(st.integers(256, 160_000)), tied=False)


loras = st.fixed_dictionaries({
    "r": st.sampled_from([4, 8, 16, 64]),
    "dropout": st.sampled_from([0.0, 0.05, 0.1]),
    "target_modules": st.lists(st.sampled_from(LINEAR_MODULES), min_size=1, max_size=7, unique=True),
})


@settings(max_examples=200, deadline=None)
@given(shapes(), loras, st.integers(1, 32), st.integers(16, 8192), st.booleans())
def test_never_less_than_what_autograd_saves(shape: Shape, lora: dict, b: int, s: int, checkpointing: bool) -> None:
    total, how = cpu_activations(shape, lora, "lora", b, s, checkpointing)
    layer = FP32 * b * s * saved_per_token_layer(shape, lora)
    saved = FP32 * shape.layers * b * s * shape.hidden if checkpointing else shape.layers * layer
    assert total >= saved + layer * (1 if checkpointing else 0)  # the recomputed layer lives during backward
    heap = FP32 * b * s * shape.hidden < MMAP_THRESHOLD_MAX
    assert ("glibc heap" in how) == heap and ("mmapped" in how) == (not heap)
    keep = HEAP if heap else MMAP
    assert total == int(keep.saved * saved + (keep.recompute if checkpointing else keep.layer) * layer)


@settings(max_examples=200, deadline=None)
@given(shapes(), loras, st.integers(1, 16), st.integers(16, 4096), st.booleans())
def test_grows_with_layers_and_lora_targets(shape: Shape, lora: dict, b: int, s: int, checkpointing: bool) -> None:
    deeper = Shape(**{**shape.__dict__, "layers": shape.layers + 1})
    base, _ = cpu_activations(shape, lora, "lora", b, s, checkpointing)
    assert cpu_activations(deeper, lora, "lora", b, s, checkpointing)[0] > base
    more = {**lora, "r": lora["r"] * 2}
    assert cpu_activations(shape, more, "lora", b, s, checkpointing)[0] > base


@settings(max_examples=200, deadline=None)
@given(shapes(), loras, st.integers(1, 16), st.integers(16, 4096), st.booleans())
def test_qlora_adds_one_layer_of_bf16_copies(shape: Shape, lora: dict, b: int, s: int, checkpointing: bool) -> None:
    plain, _ = cpu_activations(shape, lora, "lora", b, s, checkpointing)
    quantised, how = cpu_activations(shape, lora, "qlora", b, s, checkpointing)
    assert quantised - plain == qlora_layer_copies(shape, b * s) > 0
    assert "dequantisation" in how
