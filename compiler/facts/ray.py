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

# --- KubeRay RayJob: training on Ray (Ray Train's TorchTrainer, `vilms train --ray auto`) ---
# KubeRay names the job's RayCluster <rayjob>-<5 random> (≤ 53 characters): a RayJob name is at most 47
# (ray-operator/controllers/ray/utils/constant.go MaxRayJobNameLength) and a DNS-1035 label.
RAYJOB_NAME_MAX = 47
RAYJOB_SUBMISSION_MODE = "K8sJobMode"  # a submitter Job runs `ray job submit` against the head (KubeRay's default)
HEAD_CONTAINER = "ray-head"
WORKER_CONTAINER = "ray-worker"
TRAIN_WORKER_GROUP = "gpu-workers"  # workerGroupSpecs[].groupName of the trainer pods
RAY_ADDRESS_IN_CLUSTER = "auto"  # the entrypoint runs on the head: RAY_ADDRESS is set, `ray.init("auto")` finds it
