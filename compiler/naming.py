"""How ViLMS names map onto the names each target accepts.

vilms.yaml names (``[a-z0-9._-]``) are already valid compose service names, Ollama
model names and file names; Kubernetes objects need DNS-1123 labels, so '.' and '_'
become '-'. The validator rejects names whose mapped form collides or is too long.
"""

from __future__ import annotations

import re

K8S_NAME_MAX = 63
WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
_NON_DNS = re.compile(r"[._]+")


def dns_label(name: str) -> str:
    """``qwen2.5-1.5b`` → ``qwen2-5-1-5b``."""
    return _NON_DNS.sub("-", name)


def vllm_object_name(deployment: str, model: str) -> str:
    """Name of a model's vLLM Deployment/Service in the Helm chart."""
    return f"{deployment}-vllm-{dns_label(model)}"


def ray_service_name(deployment: str) -> str:
    """Name of a deployment's KubeRay RayService (one Ray cluster serves every model of the deployment)."""
    return f"{deployment}-ray"


def compose_service(engine: str, model: str | None = None) -> str:
    return engine if model is None else f"{engine}-{dns_label(model)}"


def helm_release_name(project: str, deployment: str) -> str:
    """The Helm release of a helm deployment: `vilms apply`, Argo CD and Flux all use it, so each adopts
    the release another installed."""
    return f"{project}-{deployment}"
