"""Write a llama- or qwen2-architecture Hugging Face model folder as GGUF (``gguf`` package).

Only what llama.cpp's ``LLM_ARCH_LLAMA`` / ``LLM_ARCH_QWEN2`` need: hyperparameters, a
byte-level BPE ("gpt2") vocabulary with merges, special ids and the chat template, and the
tensors. For llama, **q_proj/k_proj rows are permuted per head** from the Hugging Face
rotate-half layout to GGML's interleaved rope layout (llama.cpp's ``LlamaModel.permute``);
without that the file loads and silently gives wrong logits. Qwen2 uses NEOX rope in
llama.cpp, so its weights are written as they are (plus the q/k/v biases).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vilms.compiler.errors import ActionError

GGUF_ARCH = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
OUTTYPES = ("f32", "f16")

# chkhsh of llama.cpp's pre-tokenizer probe → tokenizer.ggml.pre (from convert_hf_to_gguf)
_KNOWN_PRE = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
}
_PROBE = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ "
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)

# Split regexes of byte-level BPE pre-tokenizers llama.cpp implements under these names
_KNOWN_SPLIT = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+": "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+": "llama-bpe",
}

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_LAYER_NAMES = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
# HF module name → llama.cpp tensor base name (for LoRA targets)
MODULE_NAMES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}


def load_hparams(model_dir: Path) -> dict[str, Any]:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    arch = (config.get("architectures") or [None])[0]
    if arch not in GGUF_ARCH:
        raise ActionError(
            f"GGUF export supports {', '.join(GGUF_ARCH)}, not {arch}",
            hint="export the merged safetensors and convert with llama.cpp's tools",
        )
    return config


def gguf_arch(config: dict[str, Any]) -> str:
    return GGUF_ARCH[config["architectures"][0]]


def needs_rope_permutation(config: dict[str, Any]) -> bool:
    """llama.cpp's llama arch uses GGML (interleaved) rope; qwen2 uses NEOX (rotate-half) like HF."""
    return gguf_arch(config) == "llama"


def gguf_tensor_name(hf_name: str) -> str | None:
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    match = _LAYER.match(hf_name)
    if match and match.group(2) in _LAYER_NAMES:
        return f"blk.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    return None


def permute_rows(weights: Any, n_head: int) -> Any:
    """HF rotate-half → GGML rope row order, per head (works on numpy arrays and torch tensors)."""
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def head_counts(config: dict[str, Any]) -> tuple[int, int]:
    n_head = int(config["num_attention_heads"])
    return n_head, int(config.get("num_key_value_heads") or n_head)


def _rope_theta(config: dict[str, Any]) -> float:
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise ActionError(f"GGUF export does not support rope scaling type {kind!r} yet")
    return float(params.get("rope_theta") or config.get("rope_theta") or 10000.0)


def _pre_tokenizer(model_dir: Path, tokenizer: Any) -> str:
    digest = hashlib.sha256(str(tokenizer.encode(_PROBE)).encode()).hexdigest()
    if digest in _KNOWN_PRE:
        return _KNOWN_PRE[digest]
    spec = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    pre = spec.get("pre_tokenizer") or {}
    if spec.get("model", {}).get("type") != "BPE":
        raise ActionError("GGUF export supports byte-level BPE tokenizers only")
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # plain GPT-2 byte-level pre-tokenization
    steps = pre.get("pretokenizers") or []
    if (
        pre.get("type") == "Sequence"
        and len(steps) == 2
        and steps[0].get("type") == "Split"
        and steps[1].get("type") == "ByteLevel"
        and not steps[1].get("use_regex", True)
    ):
        name = _KNOWN_SPLIT.get((steps[0].get("pattern") or {}).get("Regex", ""))
        if name:
            return name
    raise ActionError(
        "GGUF export does not recognise this tokenizer's pre-tokenizer",
        hint="supported: GPT-2 byte-level BPE, Llama 3, Qwen2, SmolLM tokenizers",
    )


def _vocab(model_dir: Path, vocab_size: int) -> tuple[list[str], list[int], str, Any]:
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if not (model_dir / "tokenizer.json").is_file():
        raise ActionError("GGUF export needs a fast tokenizer (tokenizer.json)")
    pre = _pre_tokenizer(model_dir, tokenizer)
    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if token in added:
            types.append(gguf.TokenType.CONTROL if decoder[i].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    return tokens, types, pre, tokenizer


def write_llama_gguf(model_dir: Path, out_path: Path, outtype: str = "f32", name: str | None = None) -> Path:
    """Convert the HF llama folder ``model_dir`` to ``out_path`` (written atomically)."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    if outtype not in OUTTYPES:
        raise ActionError(f"unsupported GGUF outtype {outtype!r} (expected {', '.join(OUTTYPES)})")
    config = load_hparams(model_dir)
    n_head, n_kv = head_counts(config)
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // n_head)
    vocab_size = int(config["vocab_size"])
    tokens, types, pre, tokenizer = _vocab(model_dir, vocab_size)

    arch = gguf_arch(config)
    permute = needs_rope_permutation(config)
    with gguf_writer(out_path, arch) as writer:
        writer.add_name(name or model_dir.name)
        writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
        writer.add_embedding_length(hidden)
        writer.add_block_count(int(config["num_hidden_layers"]))
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_kv)
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(_rope_theta(config))
        writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-5)))
        writer.add_vocab_size(vocab_size)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32 if outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        special = gguf.SpecialVocab(str(model_dir), load_merges=True)
        special.add_to_gguf(writer)
        if not special.chat_template and getattr(tokenizer, "chat_template", None):
            writer.add_chat_template(tokenizer.chat_template)

        files = sorted(model_dir.glob("*.safetensors"))
        if not files:
            raise ActionError(f"no safetensors weights in {model_dir}")
        for file in files:
            with safe_open(str(file), framework="numpy") as handle:
                for hf_name in handle.keys():
                    target = gguf_tensor_name(hf_name)
                    if target is None:
                        if hf_name.endswith("rotary_emb.inv_freq"):
                            continue
                        raise ActionError(f"GGUF export: unexpected tensor {hf_name!r} in {file.name}")
                    data = handle.get_tensor(hf_name).astype(np.float32)
                    if permute and hf_name.endswith("q_proj.weight"):
                        data = permute_rows(data, n_head)
                    elif permute and hf_name.endswith("k_proj.weight"):
                        data = permute_rows(data, n_kv)
                    if outtype == "f16" and data.ndim > 1:
                        data = data.astype(np.float16)
                    writer.add_tensor(target, np.ascontiguousarray(data))
    return out_path


@contextmanager
def gguf_writer(out_path: Path, arch: str) -> Iterator[Any]:
    """A GGUFWriter on a temporary file that replaces ``out_path`` only when the body succeeds."""
    import gguf

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    try:
        yield writer
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
