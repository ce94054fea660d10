"""vLLM: what ViLMS relies on and what it writes into every ``vllm serve --config`` file."""

from __future__ import annotations

# `vllm serve --port` default (vLLM 0.33.0 flag table; reference/serving.md); written explicitly
PORT = 8000
# the OpenAI server's health endpoint, probed by compose and Helm (reference/serving.md, production stack)
HEALTH_PATH = "/health"
# allowed `--max-lora-rank` values (vLLM 0.33.0 flag table choices; reference/serving.md MaxLoRARanks)
MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# `--gpu-memory-utilization` ViLMS writes on GPUs (reference/serving.md: default 0.9; the 0.33.0 flag
# table says 0.92, so ViLMS writes its own value and the memory planner budgets with the same one)
GPU_MEMORY_UTILIZATION = 0.9
# `--gpu-memory-utilization` ViLMS writes on Jetson: unified memory leaves room for the OS and the CPU
# side (reference/serving.md: the flag is not honoured there, so the planner also caps the budget)
JETSON_MEMORY_UTILIZATION = 0.6

# --- paths inside a vLLM container (ViLMS conventions, mounted by compose and Helm) ---
ARTIFACTS_DIR = "/vilms/artifacts"  # the project's artifacts/ (trained adapters), read-only
MODELS_DIR = "/vilms/models"  # file: model folders, each at MODELS_DIR/<path in the project>
CONFIG_DIR = "/etc/vilms"  # the generated config file's folder
CONFIG_NAME = "vllm.yaml"  # the generated config file (a ConfigMap key under Helm)
CONFIG_FILE = f"{CONFIG_DIR}/{CONFIG_NAME}"  # what `vllm serve --config` reads
HF_HOME = "/hf-cache"  # the Hugging Face cache (HF_HOME), a volume that survives restarts
