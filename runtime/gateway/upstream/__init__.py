"""Per-engine request preparation and response translation (vLLM, llama.cpp, Ollama)."""

from __future__ import annotations

from .base import BadResponse, Engine, StreamTranslator, UpstreamStreamError
from .ollama import OllamaEngine
from .openai import OpenAIEngine


def engine_for(name: str) -> Engine:
    """The engine adapter for a backend's ``engine`` value."""
    if name == "ollama":
        return OllamaEngine()
    if name in ("vllm", "llamacpp"):
        return OpenAIEngine(name)
    raise ValueError(f"unknown engine {name!r}")


__all__ = ["BadResponse", "Engine", "StreamTranslator", "UpstreamStreamError", "engine_for"]
