"""Ollama: its port, the quantisation ViLMS pulls by default, and paths in its containers."""

from __future__ import annotations

# Ollama's default listen port (OLLAMA_HOST; reference/serving.md: api_base http://host:11434)
PORT = 11434
SERVICE = "ollama"  # the server's service in a compose deployment (ollama-init beside it)
# quantisation tag pulled from a GGUF repository when a model sets no quantization.ollama
# (Ollama's spelling, as in `ollama create -q q4_K_M`; reference/serving.md)
DEFAULT_QUANT = "q4_K_M"
MODELS_DIR = "/ollama/models"  # OLLAMA_MODELS inside the server container, a named volume
INIT_ROOT = "/vilms"  # the one-shot init container mirrors the project's layout under this folder
