"""``generated/<deployment>/docker-compose.yaml`` (target compose).

Services: the engine (one Ollama, or one vLLM per model and replica, each pinned to GPUs
of its own on a GPU host), a one-shot ``ollama-init``
that creates the Ollama models from the generated Modelfiles, and the gateway, which
starts only once the engine is ready. The gateway publishes its port (on 127.0.0.1
unless the deployment sets ``expose: true``); Ollama publishes its API on a free port of
127.0.0.1 only, which ``vilms apply`` finds with ``docker compose port`` to create derived
models on the running server; vLLM publishes nothing. Secrets are only ``${NAME:?…}``
interpolations. Entrypoints are explicit, so the same file works with the upstream images
and with the Jetson (L4T) builds, which ship no server entrypoint of their own.
"""

from __future__ import annotations

import shlex
from typing import Any

from vilms.compiler import weights
from vilms.compiler.facts import gateway, ollama, vllm
from vilms.compiler.images import GATEWAY_IMAGE, engine_image
from vilms.compiler.memory import placements
from vilms.compiler.naming import compose_service
from vilms.compiler.plan import Deployment, Hardware, Plan

PROJECT_ROOT = "../.."  # generated/<deployment>/ → the folder of vilms.yaml
GATEWAY_LIMITS = {"memory": "256m", "cpus": "1"}
# keep container logs bounded: edge boards have small disks
LOGGING = {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}
ROUTES_LABEL = "vilms.dev/routes-sha256"  # on the gateway service: its routes.yaml's digest (the Helm chart's annotation too)
VLLM_START_PERIOD = "30m"  # first start downloads the weights; failures before this do not count
OLLAMA_START_PERIOD = "60s"


def escape(value: str) -> str:
    """Compose interpolates ``$``; a literal dollar is written ``$$``."""
    return value.replace("$", "$$")


def _secret(name: str, what: str) -> str:
    return f"${{{name}:?set {name} ({what})}}"


def _mib(n: int) -> str:
    return f"{max(n, 0) // 2**20}m"


def _limits(hw: Hardware) -> dict[str, Any]:
    limits: dict[str, Any] = {"memory": _mib(hw.memory_bytes - hw.os_reserve_bytes)}
    if hw.cpus:
        limits["cpus"] = str(hw.cpus)
    return limits


def _gpu(hw: Hardware, service: dict[str, Any], device_ids: list[str] | None = None) -> None:
    """GPU access: Jetson through nvidia-container-runtime; a GPU host reserves ``device_ids``
    (an engine pinned to GPUs of its own), or every GPU of the host."""
    resources = service.setdefault("deploy", {}).setdefault("resources", {})
    if hw.kind == "jetson":
        service["runtime"] = "nvidia"  # Tegra devices come from nvidia-container-runtime, not --gpus
        service.setdefault("environment", {})["NVIDIA_VISIBLE_DEVICES"] = "all"
        service["environment"]["NVIDIA_DRIVER_CAPABILITIES"] = "all"
    elif hw.kind == "gpu":
        device: dict[str, Any] = {"driver": "nvidia", "capabilities": ["gpu"]}
        if device_ids is None:
            device["count"] = hw.gpus
        else:
            device["device_ids"] = device_ids
        resources["reservations"] = {"devices": [device]}


def _healthcheck(test: list[str], start: str) -> dict[str, Any]:
    return {"test": test, "interval": "10s", "timeout": "5s", "retries": 6, "start_period": start}


def _http_probe(url: str) -> list[str]:
    return ["CMD", "python3", "-c", f"import urllib.request; urllib.request.urlopen('{url}', timeout=4)"]


def compose(plan: Plan, dep: Deployment, modelfile_names: list[str], routes_sha256: str) -> dict[str, Any]:
    """``modelfile_names``: the Ollama Modelfiles of this deployment (ignored for vLLM);
    ``routes_sha256``: the digest of its routes.yaml (see :func:`_gateway_service`)."""
    if dep.engine == "ollama":
        services, volumes, waits = _ollama_services(plan, dep, modelfile_names)
    else:
        services, volumes, waits = _vllm_services(plan, dep)
    services["gateway"] = _gateway_service(plan, dep, waits, routes_sha256)
    return {"name": f"{plan.project}-{dep.name}", "services": services, "volumes": volumes}


Services = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]  # services, volumes, what the gateway waits for


def _ollama_services(plan: Plan, dep: Deployment, modelfile_names: list[str]) -> Services:
    """One Ollama server and a one-shot init service that creates its models from the Modelfiles."""
    hw = dep.hardware
    image = engine_image("ollama", hw)
    engine = {
        "image": image,
        "entrypoint": ["ollama"],
        "command": ["serve"],
        "restart": "unless-stopped",
        "environment": {
            "OLLAMA_HOST": f"0.0.0.0:{ollama.PORT}",
            "OLLAMA_CONTEXT_LENGTH": str(max(dep.context_of(m) for m in dep.models)),
            "OLLAMA_NUM_PARALLEL": str(dep.slots),
            "OLLAMA_MAX_LOADED_MODELS": str(len(dep.models)),
            "OLLAMA_KEEP_ALIVE": "24h",
            "OLLAMA_MODELS": ollama.MODELS_DIR,
        },
        "volumes": [f"ollama-models:{ollama.MODELS_DIR}"],
        # loopback only, any free host port: `vilms apply` asks `docker compose port` (Ollama's API has no auth)
        "ports": [f"127.0.0.1::{ollama.PORT}"],
        "healthcheck": _healthcheck(["CMD", "ollama", "list"], OLLAMA_START_PERIOD),
        "deploy": {"resources": {"limits": _limits(hw)}},
        "logging": LOGGING,
    }
    _gpu(hw, engine)
    creates = [
        "ollama create " + shlex.quote(name[: -len(".Modelfile")])
        + " -f " + shlex.quote(f"{ollama.INIT_ROOT}/generated/{dep.name}/ollama/{name}")
        for name in _modelfile_order(dep, modelfile_names)
    ]
    mounts = [
        f"./ollama:{ollama.INIT_ROOT}/generated/{dep.name}/ollama:ro",
        f"{PROJECT_ROOT}/artifacts:{ollama.INIT_ROOT}/artifacts:ro",
    ]
    for model_name in dep.models:  # FROM a local GGUF: the path the Modelfile names, mirrored
        local = weights.ollama_local_file(plan.models[model_name].weights)
        if local is not None:
            mounts.append(f"{PROJECT_ROOT}/{escape(local)}:{ollama.INIT_ROOT}/{escape(local)}:ro")
    init = {
        "image": image,
        "restart": "no",
        "entrypoint": ["/bin/sh", "-ec"],
        "command": [escape(" && ".join(creates))],
        "environment": {"OLLAMA_HOST": f"http://{ollama.SERVICE}:{ollama.PORT}"},
        "volumes": mounts,
        "depends_on": {ollama.SERVICE: {"condition": "service_healthy"}},
        "logging": LOGGING,
    }
    return ({ollama.SERVICE: engine, "ollama-init": init}, {"ollama-models": {}},
            {"ollama-init": {"condition": "service_completed_successfully"}})


def replica_services(plan: Plan, dep: Deployment) -> dict[str, list[tuple[str, list[str] | None]]]:
    """Per model, its vLLM services and the GPUs each is pinned to (None on a Jetson).

    On a GPU host every engine gets GPUs of its own, numbered in model order. A model with
    ``replicas: N`` runs N services ``vllm-<model>_1`` … ``_N`` rather than ``deploy.replicas``:
    Docker gives every replica of one service the same device request, so the copies would
    all land on the same GPUs (docker/compose#11863). Each copy carries the network alias
    ``vllm-<model>``, whose DNS records the gateway discovers (one per container)."""
    places = placements(plan, dep)
    out: dict[str, list[tuple[str, list[str] | None]]] = {}
    first = 0
    for model_name in dep.models:
        place, name = places[model_name], compose_service("vllm", model_name)
        names = [name] if place.replicas == 1 else [f"{name}_{i}" for i in range(1, place.replicas + 1)]
        out[model_name] = []
        for service in names:
            ids = None
            if dep.hardware.kind == "gpu":
                ids = [str(first + k) for k in range(place.gpus)]
                first += place.gpus
            out[model_name].append((service, ids))
    return out


def _vllm_services(plan: Plan, dep: Deployment) -> Services:
    """One vLLM server per model and replica, sharing a Hugging Face cache volume."""
    hw = dep.hardware
    services: dict[str, Any] = {}
    waits: dict[str, Any] = {}
    replicas = replica_services(plan, dep)
    for model_name in dep.models:
        model = plan.models[model_name]
        name = compose_service("vllm", model_name)
        environment: dict[str, str] = {"HF_HOME": vllm.HF_HOME}
        if dep.adapters_of(model_name):
            environment["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if model.token_env:
            environment["HF_TOKEN"] = _secret(model.token_env, f"hub token for {model_name}")
        mounts = [
            f"./vllm/{model_name}.yaml:{vllm.CONFIG_FILE}:ro",
            f"hf-cache:{vllm.HF_HOME}",
            f"{PROJECT_ROOT}/artifacts:{vllm.ARTIFACTS_DIR}:ro",
        ]
        if model.source.scheme == "file":
            ref = escape(model.source.ref)
            mounts.append(f"{PROJECT_ROOT}/{ref}:{vllm.MODELS_DIR}/{ref}:ro")
        service = {
            "image": engine_image("vllm", hw),
            "entrypoint": ["vllm", "serve"],
            "command": ["--config", vllm.CONFIG_FILE],
            "restart": "unless-stopped",
            "ipc": "host",
            "environment": environment,
            "volumes": mounts,
            "healthcheck": _healthcheck(_http_probe(f"http://127.0.0.1:{vllm.PORT}{vllm.HEALTH_PATH}"), VLLM_START_PERIOD),
            "deploy": {"resources": {"limits": _limits(hw)}},
            "logging": LOGGING,
        }
        for replica, device_ids in replicas[model_name]:
            copy = {**service, "environment": dict(environment), "deploy": {"resources": {"limits": _limits(hw)}}}
            if replica != name:
                copy["networks"] = {"default": {"aliases": [name]}}
            _gpu(hw, copy, device_ids)
            services[replica] = copy
            waits[replica] = {"condition": "service_healthy"}
    return services, {"hf-cache": {}}, waits


def _gateway_service(plan: Plan, dep: Deployment, waits: dict[str, Any], routes_sha256: str) -> dict[str, Any]:
    """The gateway: starts once the engine is ready; the only service that publishes a port.

    Its routes.yaml is a bind-mounted file, and a bind mount pins the file it was given:
    `vilms build` replaces generated/ whole, so the running container would keep reading the
    old routes. The routes' digest is a label, so `docker compose up` (`vilms apply`) recreates
    the gateway, and only the gateway, when the routes change; it drains in-flight requests
    on SIGTERM. Engines keep running."""
    environment: dict[str, str] = {}
    for name in plan.gateway.key_envs:
        environment[name] = _secret(name, "comma-separated gateway API keys" if name == plan.gateway.api_keys_env
                                    else "a gateway API key")
    for name in plan.telemetry.env_names if plan.telemetry else ():
        environment[name] = f"${{{name}:-}}"  # unset: the gateway runs without OTLP export and says so once
    bind = "" if dep.expose else "127.0.0.1:"
    service: dict[str, Any] = {
        "image": GATEWAY_IMAGE,
        "restart": "unless-stopped",
        "command": ["--routes", gateway.ROUTES_FILE, "--host", "0.0.0.0", "--port", str(gateway.PORT)],
        "volumes": [f"./gateway/routes.yaml:{gateway.ROUTES_FILE}:ro"],
        "ports": [f"{bind}{dep.gateway_port}:{gateway.PORT}"],
        "depends_on": waits,
        "healthcheck": _healthcheck(_http_probe(f"http://127.0.0.1:{gateway.PORT}{gateway.LIVE_PATH}"), "10s"),
        "deploy": {"resources": {"limits": dict(GATEWAY_LIMITS)}},
        "read_only": True,
        "tmpfs": ["/tmp"],
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "logging": LOGGING,
        "labels": {ROUTES_LABEL: routes_sha256},
    }
    if environment:
        service["environment"] = environment
    return service


def _modelfile_order(dep: Deployment, names: list[str]) -> list[str]:
    """Base models first (derived models are FROM them), then adapter aliases."""
    bases = [f"{m}.Modelfile" for m in dep.models]
    return bases + sorted(name for name in names if name not in bases)
