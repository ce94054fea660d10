"""A tiny llama- (or qwen2-) architecture model + byte-level BPE tokenizer, built locally,
and a tiny project around it (``vilms.yaml``, a training config, a chat dataset).

Used by the tests, ``bench/train.py`` and demos: no hub download, a few hundred KB on
disk, trains at about ten milliseconds per step on one CPU core.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from vilms.compiler.contracts.training_config import (
    TRAINING_CONFIG,
    BaseModel,
    DatasetRef,
    DistributedSpec,
    ExportSpec,
    GateSpec,
    HardwareSpec,
    LoraSpec,
    MemoryEstimate,
    TrackingSpec,
    TrainingConfig,
    TrainingSpec,
)
from vilms.compiler.layout import Layout

CORPUS_LINES = (
    "How do I reset my password? Open settings, choose security and press reset password.",
    "Where is my order? You can track every order from the orders page of your account.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.",
    "Customer support answers questions about billing, shipping, refunds and accounts.",
    "To change your email address, open your profile and edit the contact section.",
    "Refunds are processed within five business days after we receive the item.",
    "Hello! Thanks for reaching out. I am happy to help you with that today.",
    "user assistant system message content reply question answer help thanks",
)
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")


def build_tiny_llama(
    out_dir: Path,
    seed: int = 0,
    vocab_size: int = 384,
    hidden: int = 64,
    layers: int = 2,
    chat_template: str = "chatml",
    arch: str = "llama",
) -> Path:
    """Write a tiny random Llama (or Qwen2: ``arch="qwen2"``) model and its tokenizer; return the folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from .chat_templates import get_template

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(CORPUS_LINES) * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>", unk_token=None
    )
    template = get_template(chat_template)
    assert template is not None
    fast.chat_template = template.jinja
    fast.save_pretrained(out_dir)
    real_vocab = tok.get_vocab_size()

    torch.manual_seed(seed)
    common = dict(
        vocab_size=real_vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    if arch == "qwen2":  # q/k/v biases and tied embeddings, like Qwen2.5-0.5B/1.5B
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=False))
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def tiny_chat_rows(count: int = 64) -> list[dict[str, object]]:
    """Deterministic support-style chat rows for the tiny model."""
    pairs = (
        ("How do I reset my password?", "Open settings, choose security and press reset password."),
        ("Where is my order?", "You can track every order from the orders page of your account."),
        ("How do I change my email?", "Open your profile and edit the contact section."),
        ("When do I get my refund?", "Refunds are processed within five business days."),
    )
    rows: list[dict[str, object]] = []
    for index in range(count):
        question, answer = pairs[index % len(pairs)]
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if index % 3 == 0:
            messages.insert(0, {"role": "system", "content": "You help customers."})
        rows.append({"messages": messages})
    return rows


def tiny_training_config() -> TrainingConfig:
    """A training config for the tiny model in a project laid out as models/tiny (the model
    folder), data/support.jsonl, generated/training/tiny-v1.yaml."""
    return TrainingConfig(
        project="acme",
        adapter="tiny-v1",
        base_model=BaseModel(name="tiny", source="file:models/tiny", revision=None, family="llama", chat_template="chatml"),
        dataset=DatasetRef(name="support", path="data/support.jsonl", format="chat", sha256=None, eval_fraction=0.125),
        method="lora",
        lora=LoraSpec(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
                      bias="none", use_rslora=False),
        quantization=None,
        training=TrainingSpec(
            epochs=1, max_steps=40, learning_rate=0.003, batch_size=4, gradient_accumulation_steps=1, seq_len=128,
            seed=7, warmup_ratio=0.05, lr_scheduler="cosine", weight_decay=0.0, save_steps=10, eval_steps=20,
            logging_steps=5, gradient_checkpointing=False,
        ),
        distributed=DistributedSpec(
            strategy="ddp", declared="auto", reason="auto: one process holds a replica", nnodes=1, nproc_per_node=1,
            max_nproc_per_node=2, collective_timeout_s=60.0, max_restarts=3, engine="torchrun",
        ),
        gate=GateSpec(max_eval_perplexity=None, regression=(), on_fail="approval"),
        hardware=HardwareSpec(name="laptop", kind="cpu", memory_bytes=17179869184, gpu_memory_bytes=0, gpus=0,
                              cpus=2, nodes=1),
        export=ExportSpec(gguf=True, quantize=()),
        artifact_store=None,
        tracking=TrackingSpec(mlflow=None),
        telemetry=None,
        memory_estimate=MemoryEstimate(total_bytes=123, weights_bytes=1, adapter_bytes=1, optimizer_bytes=1,
                                       activations_bytes=1, overhead_bytes=1),
    )


# the same config as plain data (what the file holds), for tests that change or break it
TINY_TRAINING_CONFIG: dict[str, Any] = TRAINING_CONFIG.data(tiny_training_config())


def merge_config(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in recursively (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def write_tiny_project(
    root: Path,
    model_dir: Path | None,
    changes: dict[str, Any] | None = None,
    rows: list[dict[str, Any]] | None = None,
    adapter: str | None = None,
) -> Path:
    """A project folder with vilms.yaml, generated/training/<adapter>.yaml, data and a model link.

    Returns the path of ``vilms.yaml``. ``changes`` are merged into :data:`TINY_TRAINING_CONFIG`.
    """
    import yaml

    config = merge_config(TINY_TRAINING_CONFIG, changes or {})
    if adapter:
        config["adapter"] = adapter
    root.mkdir(parents=True, exist_ok=True)
    (root / "vilms.yaml").write_text("apiVersion: vilms/v1\nproject: acme\n", encoding="utf-8")
    link = root / "models" / "tiny"
    if model_dir is not None and not link.exists():
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(model_dir.resolve())
    data = root / config["dataset"]["path"]
    data.parent.mkdir(parents=True, exist_ok=True)
    if not data.exists():
        data.write_text("".join(json.dumps(r) + "\n" for r in (rows or tiny_chat_rows())), encoding="utf-8")
    target = Layout(root).training_config(config["adapter"])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")
    return root / "vilms.yaml"
