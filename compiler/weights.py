"""Which weights each engine loads for a model.

``source`` holds the model's weights (``hf:`` or a ``file:`` folder of safetensors, which
training and vLLM use; or an ``ollama:`` tag; or a ``file:*.gguf``). llama.cpp and Ollama
need GGUF weights: a model names them with ``gguf:`` (a repository of GGUF files or a
local ``.gguf``) unless its source already is GGUF; Ollama may instead pull a library
tag named by ``ollama:``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vilms.compiler.facts import ollama

OLLAMA_QUANT_TAGS = {"f16": "F16"}


def is_gguf_file(ref: str) -> bool:
    return ref.lower().endswith(".gguf")


def gguf_weights(model: Mapping[str, Any]) -> str | None:
    """``hf:<repo>`` or ``file:<path>.gguf`` holding GGUF weights, or None."""
    if "gguf" in model:
        return model["gguf"]
    source = model["source"]
    if source.startswith("file:") and is_gguf_file(source):
        return source
    return None


def ollama_tag(model: Mapping[str, Any]) -> str | None:
    """The Ollama library tag the model is served from, if any."""
    if "ollama" in model:
        return model["ollama"]
    if model["source"].startswith("ollama:"):
        return model["source"][len("ollama:"):]
    return None


def ollama_local_file(model: Mapping[str, Any]) -> str | None:
    """The project-relative ``.gguf`` Ollama loads, when it loads a local file."""
    gguf = gguf_weights(model)
    if ollama_tag(model) is None and gguf is not None and gguf.startswith("file:"):
        return gguf[len("file:"):]
    return None


def ollama_from(model: Mapping[str, Any], quant: str = ollama.DEFAULT_QUANT) -> str | None:
    """The Modelfile ``FROM`` value, relative paths as seen from ``generated/<dep>/ollama/``."""
    tag = ollama_tag(model)
    if tag is not None:
        return tag
    local = ollama_local_file(model)
    if local is not None:
        return f"../../../{local}"
    gguf = gguf_weights(model)
    if gguf is None:
        return None
    return f"hf.co/{gguf[3:]}:{OLLAMA_QUANT_TAGS.get(quant, quant.upper())}"


def trainable(model: Mapping[str, Any]) -> bool:
    """Training needs transformers weights: an ``hf:`` repository or a ``file:`` folder."""
    source = model["source"]
    return source.startswith("hf:") or (source.startswith("file:") and not is_gguf_file(source))


def vllm_loadable(model: Mapping[str, Any]) -> bool:
    return trainable(model)
