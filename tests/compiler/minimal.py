"""A small valid vilms.yaml used as the base of many tests."""

MINIMAL = """\
apiVersion: vilms/v1
project: demo
hardware:
  laptop: {kind: cpu, memory: 16GiB, cpus: 4}
  gpu1: {kind: gpu, gpus: 1, gpu_memory: 48GiB, memory: 64GiB}
models:
  qwen2.5-1.5b:
    gguf: hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF
    source: hf:Qwen/Qwen2.5-1.5B-Instruct
    family: qwen2
    params: 1.5B
    context: 8192
    chat_template: chatml
datasets:
  support: {path: data/support.jsonl, format: chat}
adapters:
  support-v1:
    base: qwen2.5-1.5b
    dataset: support
    method: lora
    lora: {r: 16}
    hardware: gpu1
aliases:
  chat: qwen2.5-1.5b
  support-bot: {model: qwen2.5-1.5b, adapter: support-v1, fallbacks: [chat]}
deployments:
  dev: {hardware: laptop, target: local, engine: llamacpp}
  gpu: {hardware: gpu1, target: compose, engine: vllm}
gateway:
  api_keys: env:VILMS_API_KEYS
"""
