"""Write a tiny llama-architecture GGUF (random weights, byte-level BPE vocab, ChatML template).

Big enough for llama.cpp to load and generate, small enough to build in milliseconds:
hidden 64, 2 layers, 4 heads (2 KV heads), ~300 tokens. The output is noise; the tests
only need a real llama.cpp server speaking its real wire format.
"""

from __future__ import annotations

from pathlib import Path

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode table: the 256 single-byte tokens of a byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    table = dict(zip(printable, chars, strict=True))
    return [chr(table[b]) for b in range(256)]


def write_tiny_llama(path: Path, seed: int = 0, omit: tuple[str, ...] = ()) -> Path:
    """``omit``: tensors left out (a header llama.cpp accepts, a model it cannot load)."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    hidden, ff, layers, heads, kv_heads = 64, 128, 2, 4, 2
    head_dim = hidden // heads
    merges = ["Ġ t", "h e", "Ġt he", "i n", "e r", "a n", "o n", "Ġ a"]
    merged = ["Ġt", "he", "Ġthe", "in", "er", "an", "on", "Ġa"]
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = _byte_tokens() + merged + special
    types = [gguf.TokenType.NORMAL] * (len(tokens) - len(special)) + [gguf.TokenType.CONTROL] * len(special)
    vocab = len(tokens)
    eos, im_start, im_end = tokens.index("<|endoftext|>"), tokens.index("<|im_start|>"), tokens.index("<|im_end|>")

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("vilms-tiny-test")
    writer.add_context_length(512)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(im_start)
    writer.add_eos_token_id(im_end)
    writer.add_pad_token_id(eos)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    add_tensor = writer.add_tensor
    writer.add_tensor = lambda name, *a, **k: None if name in omit else add_tensor(name, *a, **k)  # type: ignore[method-assign]

    def weight(*shape: int, scale: float = 0.02) -> "np.ndarray":
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer.add_tensor("token_embd.weight", weight(vocab, hidden))
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    writer.add_tensor("output.weight", weight(vocab, hidden))
    for n in range(layers):
        writer.add_tensor(f"blk.{n}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{n}.attn_q.weight", weight(hidden, hidden))
        writer.add_tensor(f"blk.{n}.attn_k.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{n}.attn_v.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{n}.attn_output.weight", weight(hidden, hidden))
        writer.add_tensor(f"blk.{n}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{n}.ffn_gate.weight", weight(ff, hidden))
        writer.add_tensor(f"blk.{n}.ffn_up.weight", weight(ff, hidden))
        writer.add_tensor(f"blk.{n}.ffn_down.weight", weight(hidden, ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_tiny_lora(path: Path, seed: int, rank: int = 4, scale: float = 0.5) -> Path:
    """A LoRA GGUF for :func:`write_tiny_llama`'s model (random, big enough to change its greedy
    answer), as ``vilms export --gguf`` writes one: ``blk.N.<base>.weight.lora_a`` ``(r, in)``
    and ``.lora_b`` ``(out, r)`` on every attention and MLP projection."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    hidden, ff, layers, kv = 64, 128, 2, 2 * 16
    shapes = {"attn_q": (hidden, hidden), "attn_k": (kv, hidden), "attn_v": (kv, hidden),
              "attn_output": (hidden, hidden), "ffn_gate": (ff, hidden), "ffn_up": (ff, hidden), "ffn_down": (hidden, ff)}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))
    for n in range(layers):
        for name, (out, inp) in shapes.items():
            writer.add_tensor(f"blk.{n}.{name}.weight.lora_a", (rng.standard_normal((rank, inp)) * scale).astype(np.float32))
            writer.add_tensor(f"blk.{n}.{name}.weight.lora_b", (rng.standard_normal((out, rank)) * scale).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
