"""Per-engine request preparation and response translation (vLLM, llama.cpp, Ollama, Ray Serve LLM)."""

from __future__ import annotations

from collections.abc import Mapping

from vilms.compiler.contracts.routes import Route

from .base import BadResponse, Engine, StreamTranslator, UpstreamStreamError
from .ollama import OllamaEngine
from .openai import OpenAIEngine


def engine_for(name: str, lora_slots: int = 0) -> Engine:
    """The engine adapter for a backend's ``engine`` value; ``lora_slots``: the adapters a
    llama.cpp backend loaded at start (see :func:`lora_slots`)."""
    if name == "ollama":
        return OllamaEngine()
    if name in ("vllm", "llamacpp", "ray"):  # Ray Serve LLM's router speaks vLLM's OpenAI API
        return OpenAIEngine(name, lora_slots)
    raise ValueError(f"unknown engine {name!r}")


def lora_slots(aliases: Mapping[str, Route], backend: str) -> int:
    """How many adapters the backend's servers loaded at start: the compiler numbers the
    released adapters of a llama.cpp server 0..n-1 and routes an alias to each."""
    return max((r.adapter.slot + 1 for r in aliases.values()
                if r.backend == backend and r.adapter is not None and r.adapter.slot is not None), default=0)


__all__ = ["BadResponse", "Engine", "StreamTranslator", "UpstreamStreamError", "engine_for", "lora_slots"]
