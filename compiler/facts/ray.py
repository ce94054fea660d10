"""Ray: KubeRay's RayService and RayJob, Ray Serve LLM and Ray Train, as ViLMS relies on them.

From KubeRay's CRDs (``../shared/reference/crds/rayservice_v1.json``, ``rayjob_v1.json``), Ray 2.60's
own config models (``../shared/reference/ray-2.60/``) and Ray's documentation: a RayService runs
``serveConfigV2`` (a ServeDeploySchema as a YAML string); KubeRay names the Service in front of every
Serve proxy ``<rayservice>-serve-svc``; Ray Serve LLM loads a LoRA adapter requested as
``<model_id>:<adapter>`` from ``<dynamic_lora_loading_path>/<adapter>``.
"""

from __future__ import annotations

VERSION = "2.60.0"  # the Ray of the images, of the `ray` extra and of the schemas in reference/ray-2.60
API_GROUP = "ray.io"
API_VERSION = f"{API_GROUP}/v1"  # of RayService and RayJob

# --- Ray Serve LLM (serveConfigV2) ---
LLM_APP_IMPORT_PATH = "ray.serve.llm:build_openai_app"  # args: {llm_configs: [LLMConfig, ...]}
LLM_APP_NAME = "llm"  # applications[].name
ROUTE_PREFIX = "/"  # the OpenAI API under /v1 of the Serve proxy
ADAPTER_SEPARATOR = ":"  # a request's model "<model_id>:<adapter>" selects a LoRA adapter
LORA_URI_SCHEMES = ("s3://", "gs://", "abfss://", "azure://")  # what Ray's LoraConfig validator accepts

# --- ports of a Ray node (Ray defaults; KubeRay names the container ports) ---
GCS_PORT = 6379
DASHBOARD_PORT = 8265
CLIENT_PORT = 10001
SERVE_PORT = 8000  # the Serve HTTP proxy on every node
SERVE_SERVICE_SUFFIX = "-serve-svc"  # KubeRay's Service in front of the Serve proxies
SERVE_HEALTH_PATH = "/-/healthz"  # the Serve proxy's health endpoint
SERVE_ROUTES_PATH = "/-/routes"

# --- the gateway's view ---
ENGINE = "ray"  # Backend.engine and the engine label of every metric of a Ray backend
HEAD_HEALTH_PATH = "/api/gcs_healthz"  # the dashboard's GCS health check on the head (DASHBOARD_PORT)

# --- the Ray cluster of a RayService (KubeRay) ---
HEAD_GROUP_START_PARAMS = {"num-gpus": "0", "dashboard-host": "0.0.0.0"}  # no GPU on the head: no replica lands there
WORKER_GROUP_NAME = "gpu"  # one worker group: every node of the hardware profile is alike
HEAD_RESOURCES = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}  # GCS, Serve controller, proxy

# --- Ray's S3 client (ray.llm._internal.common.utils.cloud_filesystem.s3_filesystem, Ray 2.60): a plain
# boto3.client("s3") with no endpoint_url or credentials of its own, so botocore's environment applies.
# AWS_ENDPOINT_URL_S3 is read by botocore (service-specific endpoint) and by Ray's pyarrow path too. ---
S3_ENV_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
S3_ENV_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
S3_ENV_ENDPOINT = "AWS_ENDPOINT_URL_S3"
S3_ENV_REGION = "AWS_DEFAULT_REGION"  # botocore's region variable (AWS_REGION is not read for the client region)

# --- accelerator_type of an LLMConfig: Ray schedules a replica on nodes holding the resource
# "accelerator_type:<value>", and a node advertises the value Ray derives from the GPU's NVML name
# (ray/_private/accelerators/nvidia_gpu.py, NVIDIA_GPU_NAME_PATTERN: "NVIDIA A100-SXM4-80GB" -> "A100").
# So the key is the profile's gpu_type (GPU Feature Discovery's nvidia.com/gpu.product, the NVML name with
# spaces as '-') and the value what Ray detects on such a node; Ray's memory variants ("A100-80G") are
# never detected on a node and would leave the replica unscheduled. A gpu_type not listed here: the
# LLMConfig has no accelerator_type (the nodeSelector on gpu_type already pins the GPU model).
ACCELERATOR_TYPES = {
    "NVIDIA-A10G": "A10G",
    "NVIDIA-A100-PCIE-40GB": "A100",
    "NVIDIA-A100-SXM4-40GB": "A100",
    "NVIDIA-A100-80GB-PCIe": "A100",
    "NVIDIA-A100-SXM4-80GB": "A100",
    "NVIDIA-B200": "B200",
    "NVIDIA-H100-80GB-HBM3": "H100",
    "NVIDIA-H100-NVL": "H100",
    "NVIDIA-H100-PCIe": "H100",
    "NVIDIA-H200": "H200",
    "NVIDIA-L4": "L4",
    "NVIDIA-L40S": "L40S",
    "Tesla-T4": "T4",
    "Tesla-V100-SXM2-16GB": "V100",
    "Tesla-V100-SXM2-32GB": "V100",
}

# --- KubeRay RayJob: training on Ray (Ray Train's TorchTrainer, `vilms train --ray auto`) ---
# KubeRay names the job's RayCluster <rayjob>-<5 random> (≤ 53 characters): a RayJob name is at most 47
# (ray-operator/controllers/ray/utils/constant.go MaxRayJobNameLength) and a DNS-1035 label.
RAYJOB_NAME_MAX = 47
RAYJOB_SUBMISSION_MODE = "K8sJobMode"  # a submitter Job runs `ray job submit` against the head (KubeRay's default)
HEAD_CONTAINER = "ray-head"
WORKER_CONTAINER = "ray-worker"
TRAIN_WORKER_GROUP = "gpu-workers"  # workerGroupSpecs[].groupName of the trainer pods
RAY_ADDRESS_IN_CLUSTER = "auto"  # the entrypoint runs on the head: RAY_ADDRESS is set, `ray.init("auto")` finds it
