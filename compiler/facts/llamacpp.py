"""llama.cpp (llama-server or llama-cpp-python servers, target local): ports, threads and defaults."""

from __future__ import annotations

# a deployment's engine_port default: the first llama.cpp server; one port per server, counting up
FIRST_PORT = 8101
# CPU threads of a deployment's servers together when neither the deployment's threads nor the
# hardware profile's cpus are given; split evenly among the servers
DEFAULT_THREADS = 4
# a deployment's gpu_layers when not given: none on cpu hardware, all elsewhere (ALL_GPU_LAYERS)
ALL_GPU_LAYERS = -1
# quantisation a GGUF repository's file is picked by (`*q4_k_m*.gguf`) when a model sets no
# quantization.llamacpp (llama.cpp's lower-case file naming)
DEFAULT_QUANT = "q4_k_m"
# llama.cpp's default n_ubatch: tokens per compute micro-batch (sizes the output-logits buffer)
UBATCH = 512
# what a server answers with 200 once its model is loaded: llama-server (503 while loading),
# and llama-cpp-python's server (which has no health endpoint)
HEALTH_PATH = "/health"
LORA_ADAPTERS_PATH = "/lora-adapters"  # llama-server: [{"id", "path", "scale"}] of the adapters loaded at start
PYTHON_SERVER_HEALTH_PATH = "/v1/models"
# GGUF `general.architecture` values a model of each vilms.yaml family may carry (llama.cpp's
# converter writes Mistral 7B and SmolLM 1/2 as llama)
GGUF_ARCHITECTURES = {
    "llama": ("llama",), "qwen2": ("qwen2",), "qwen3": ("qwen3",), "mistral": ("llama", "mistral3"),
    "gemma": ("gemma",), "gemma2": ("gemma2",), "phi3": ("phi3",), "smollm": ("llama", "smollm3"),
}
# target local: the variable the gateway reads the per-run engine key from (routes: the
# llama.cpp backends' api_key_env); `vilms up` sets it for the gateway, never in a file of generated/
ENGINE_KEY_ENV = "VILMS_ENGINE_KEY"
ENGINE = "llamacpp"  # the engine name of these servers in routes.yaml
# requests the gateway sends a llama.cpp server at once: llama-cpp-python's server runs one at a
# time (behind a lock); further requests wait in the gateway, where the first-byte limit does not run
GATEWAY_SLOTS = 1
