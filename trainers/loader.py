"""Load the base model and tokenizer named by a training config (torch side).

``file:<path>`` is a local Hugging Face folder relative to the project root;
``hf:<repo>[@rev]`` is read through the Hugging Face cache (set ``HF_HUB_OFFLINE=1`` for
air-gapped machines). QLoRA loads the base in 4-bit through bitsandbytes; LoRA and merges
load it unquantized.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilms.compiler.contracts.training_config import BaseModel, LoraSpec, QuantSpec
from vilms.compiler.errors import ActionError

from .chat_templates import get_template


@dataclass(frozen=True)
class ModelSource:
    """Where to load from: a local folder or a hub repo id at a revision."""

    location: str
    revision: str | None
    local: bool

    def describe(self) -> str:
        return self.location + (f"@{self.revision}" if self.revision else "")


def resolve_source(base: BaseModel, project_root: Path) -> ModelSource:
    if base.source.startswith("file:"):
        folder = (project_root / base.source[len("file:") :]).resolve()
        if not (folder / "config.json").is_file():
            raise ActionError(
                f"base model folder {folder} has no config.json",
                hint="base_model.source file:<path> must name a local Hugging Face model folder",
            )
        return ModelSource(str(folder), None, True)
    return ModelSource(base.source[len("hf:") :], base.revision, False)


def device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_dtype() -> Any:
    """bf16 where the GPU supports it, else fp32 (CPU bf16 matmuls are slow and lossy)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(source: ModelSource, chat_template: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location, revision=source.revision)
    except (OSError, ValueError) as exc:
        raise ActionError(f"cannot load the tokenizer of {source.describe()}: {exc}".splitlines()[0]) from None
    template = get_template(chat_template)
    if template is not None:
        tokenizer.chat_template = template.jinja
    elif not getattr(tokenizer, "chat_template", None):
        raise ActionError(
            f"{source.describe()} has no chat template of its own",
            hint="set chat_template to chatml, llama3, mistral, gemma or phi3",
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def bnb_config(quant: QuantSpec) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=quant.load_in_4bit,
        bnb_4bit_quant_type=quant.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=quant.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=getattr(torch, quant.bnb_4bit_compute_dtype),
    )


def load_base_model(source: ModelSource, quant: QuantSpec | None = None, dtype: Any = None) -> Any:
    """The base model, unquantized (``quant=None``) or 4-bit through bitsandbytes."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"revision": source.revision, "dtype": dtype or train_dtype()}
    if quant is not None:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ActionError("method qlora needs bitsandbytes", hint="pip install 'vilms[train]'") from None
        kwargs["quantization_config"] = bnb_config(quant)
        kwargs["device_map"] = {"": str(device())}
    try:
        model = AutoModelForCausalLM.from_pretrained(source.location, **kwargs)
    except (OSError, ValueError) as exc:
        raise ActionError(f"cannot load base model {source.describe()}: {exc}".splitlines()[0]) from None
    if quant is None:
        model.to(device())
    else:
        _disable_cpu_inference_packing(model)
    return model


def _disable_cpu_inference_packing(model: Any) -> None:
    """Keep bitsandbytes from repacking 4-bit weights for CPU inference.

    bitsandbytes (0.50) converts a Linear4bit's weight to an AVX512-BF16 inference layout
    the first time it runs in eval mode on CPU and never converts it back; training after
    an evaluation then runs through ``gemv_4bit``, which has no autograd kernel, so no
    gradient flows through the frozen base layers — silently. Turning the optimisation off
    keeps evaluation and generation on the differentiable path.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def peft_config(lora: LoraSpec) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=list(lora.target_modules),
        bias=lora.bias,
        use_rslora=lora.use_rslora,
        task_type="CAUSAL_LM",
    )
