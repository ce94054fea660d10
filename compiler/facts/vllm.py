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

# --- what a running vLLM server exports (vllm/v1/metrics/loggers.py, PrometheusStatLogger) ---
METRICS_PATH = "/metrics"  # Prometheus text format, on the API port
METRIC_WAITING = "vllm:num_requests_waiting"  # gauge: requests queued for a batch (KEDA scales on it)
METRIC_RUNNING = "vllm:num_requests_running"  # gauge: requests in the running batch
METRIC_KV_CACHE = "vllm:kv_cache_usage_perc"  # gauge 0..1 (renamed from gpu_cache_usage_perc in 0.9)
METRIC_PROMPT_TOKENS = "vllm:prompt_tokens_total"  # counter (prometheus_client adds _total)
METRIC_GENERATION_TOKENS = "vllm:generation_tokens_total"  # counter
METRIC_E2E_LATENCY = "vllm:e2e_request_latency_seconds"  # histogram
METRIC_TTFT = "vllm:time_to_first_token_seconds"  # histogram

# --- start-up under Kubernetes: the startup probe allows the slowest expected load ---
# A cold start downloads the weights into an empty cache, then loads them onto the GPUs. 200 MiB/s is a
# generous rate for a Hugging Face download plus the load (a warm cache is several times faster), so a
# probe sized on it does not kill a pod that is merely slow; ENGINE_START_S covers the rest (CUDA graph
# capture, torch.compile, KV-cache profiling), and UNKNOWN_LOAD_S an engine whose weight size is unknown.
LOAD_BYTES_PER_S = 200 * 2**20
ENGINE_START_S = 300
UNKNOWN_LOAD_S = 1800
STARTUP_PROBE_PERIOD_S = 10

# vLLM's own multi-node launcher in the vllm/vllm-openai image (docs/deployment/frameworks/lws.md):
# `leader --ray_cluster_size=N` starts the Ray head, `worker --ray_address=HOST` joins it
MULTI_NODE_SCRIPT = "/vllm-workspace/examples/online_serving/multi-node-serving.sh"
