"""``generated/<deployment>/gateway/routes.yaml``: the gateway's routing table."""

from __future__ import annotations

from vilms.compiler.contracts.routes import (
    AdapterRef,
    Backend,
    Discovery,
    GatewayRoutes,
    GatewaySettings,
    HardwareInfo,
    KeyScope,
    Route,
)
from vilms.compiler.facts import llamacpp, ray, vllm
from vilms.compiler.facts.ollama import PORT as OLLAMA_PORT
from vilms.compiler.naming import compose_service, ray_service_name, vllm_object_name
from vilms.compiler.plan import Deployment, Plan, Upstream

MAX_OUTPUT_FRACTION = 4  # default max_tokens clamp: a quarter of the context
# vilms.yaml param names → the OpenAI-style names the gateway sends (it maps them back for Ollama)
PARAM_NAMES = {"repeat_penalty": "repetition_penalty"}


def backend_id(dep: Deployment, model: str) -> str:
    if dep.engine in ("ollama", "ray"):
        return dep.engine  # one server (Ollama) or one Serve endpoint (Ray) serves every model
    return f"{dep.engine}-{model}"  # vLLM and llama.cpp: one backend per base model


def llamacpp_ports(dep: Deployment) -> dict[str, int]:
    """Port of each llama.cpp server process (one per base model), in a stable order."""
    return {name: dep.engine_port + i for i, name in enumerate(sorted(dep.models))}


def llamacpp_adapters(dep: Deployment, model: str) -> tuple[str, ...]:
    """The released adapters the llama.cpp server of ``model`` loads, in ``--lora`` order:
    an adapter's index is its slot, selected per request."""
    return tuple(sorted({u.adapter for u in dep.upstreams.values() if u.model == model and u.adapter and u.released}))


def vllm_host(dep: Deployment, model: str) -> str:
    """The DNS name of a model's vLLM engines: a headless Service (helm) or a compose service;
    its records are one address per pod or container."""
    return vllm_object_name(dep.name, model) if dep.target == "helm" else compose_service("vllm", model)


def endpoint(dep: Deployment, model: str, ports: dict[str, int] | None = None) -> str:
    if dep.engine == "ollama":
        return f"http://{compose_service('ollama')}:{OLLAMA_PORT}"
    if dep.engine == "vllm":
        return f"http://{vllm_host(dep, model)}:{vllm.PORT}"
    if dep.engine == "ray":  # KubeRay's Service in front of every Serve proxy; Ray balances over the replicas
        return f"http://{ray_service_name(dep.name)}{ray.SERVE_SERVICE_SUFFIX}:{ray.SERVE_PORT}"
    return f"http://127.0.0.1:{(ports or llamacpp_ports(dep))[model]}"


def _backend(dep: Deployment, model: str, ports: dict[str, int]) -> Backend:
    vllm_engine = dep.engine == "vllm"
    return Backend(id=backend_id(dep, model), engine=dep.engine,
                   endpoints=(endpoint(dep, model, ports),),
                   api_key_env=llamacpp.ENGINE_KEY_ENV if dep.engine == "llamacpp" and dep.target == "local" else None,
                   discovery=Discovery(host=vllm_host(dep, model), port=vllm.PORT, scheme="http") if vllm_engine else None,
                   runtime_lora=vllm_engine)


def adapter_ref(plan: Plan, dep: Deployment, up: Upstream) -> AdapterRef | None:
    """What the gateway needs to serve ``up``'s adapter: its released run, for vLLM the path
    each engine loads it from at run time, for Ray the run's folder in the artifact store (Ray
    Serve LLM loads it on demand), for llama.cpp its slot on the base model's server."""
    if not up.adapter:
        return None
    run = plan.adapters[up.adapter].release if up.released else None
    path = None
    if run and dep.engine == "vllm":
        path = f"{vllm.ARTIFACTS_DIR}/{run}/adapter"
    elif run and dep.engine == "ray" and plan.artifact_store is not None:
        path = plan.artifact_store.run_uri(run)
    slot = llamacpp_adapters(dep, up.model).index(up.adapter) if run and dep.engine == "llamacpp" else None
    return AdapterRef(name=up.adapter, released=up.released, run=run, path=path, slot=slot)


def routes(plan: Plan, dep: Deployment) -> GatewayRoutes:
    gw = plan.gateway
    backends: dict[str, Backend] = {}
    aliases: dict[str, Route] = {}
    ports = llamacpp_ports(dep) if dep.engine == "llamacpp" else {}
    for alias_name in dep.aliases:
        alias = plan.aliases[alias_name]
        up = dep.upstreams[alias_name]
        backend = _backend(dep, up.model, ports)  # the base model's engine serves its adapters too
        backends[backend.id] = backend
        params = {PARAM_NAMES.get(k, k): v for k, v in alias.params.items()}
        max_out = params.pop("max_tokens", None) or max(256, up.context // MAX_OUTPUT_FRACTION)
        aliases[alias_name] = Route(
            name=alias_name,
            backend=backend.id,
            model=up.name,
            adapter=adapter_ref(plan, dep, up),
            context=up.context,
            max_output_tokens=min(max_out, up.context),
            system=alias.system,
            params=params,
            fallbacks=alias.fallbacks,
            task=plan.models[up.model].task,
        )
    hw = dep.hardware
    return GatewayRoutes(
        deployment=dep.name,
        hardware=HardwareInfo(name=hw.name, kind=hw.kind, memory_bytes=hw.memory_bytes),
        gateway=GatewaySettings(
            api_keys_env=gw.api_keys_env,
            keys={name: KeyScope(name=name, env=key.env, rpm=key.rpm, tpm=key.tpm,
                                 aliases=None if key.aliases is None else tuple(a for a in key.aliases if a in aliases))
                  for name, key in gw.keys.items()},
            ops_key_env=gw.ops_key_env,
            telemetry=plan.telemetry,
            retries=gw.retries,
            connect_timeout_s=gw.connect_timeout,
            read_timeout_s=gw.read_timeout,
            first_byte_timeout_s=gw.first_byte_timeout,
            request_timeout_s=gw.request_timeout,
            write_timeout_s=gw.write_timeout,
            max_body_bytes=gw.max_body_bytes,
            max_response_bytes=gw.max_response_bytes,
            max_queue=gw.max_queue,
            cooldown_s=gw.cooldown,
            eject_after=gw.eject_after,
            discovery_interval_s=gw.discovery_interval,
            balance=gw.balance,
            on_overlong_prompt=gw.on_overlong_prompt,
        ),
        backends=backends,
        aliases=aliases,
    )
