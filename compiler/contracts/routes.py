"""``generated/<deployment>/gateway/routes.yaml`` (kind GatewayRoutes): the gateway's routing table.

Written by :mod:`vilms.compiler.render.routes`, read by the gateway (`vilms serve`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vilms.compiler.record import record
from vilms.compiler.reporter import Reporter
from vilms.compiler.suggest import did_you_mean

from .codec import name_field
from .contract import Contract
from .telemetry import OtlpSpec


@record
class HardwareInfo:
    """The hardware profile the deployment runs on (the gateway trims requests to it)."""

    name: str
    kind: str  # jetson | cpu | gpu
    memory_bytes: int


@record
class KeyScope:
    """A named API key: the variable that holds it, the aliases it may use, its rate limits."""

    name: str = name_field()
    env: str
    aliases: tuple[str, ...] | None  # None: every alias of the deployment
    rpm: int | None  # requests per minute, per gateway process
    tpm: int | None  # tokens per minute (prompt + completion), per gateway process


@record
class GatewaySettings:
    """The gateway's own settings: keys, retries, timeouts, limits, balancing."""

    api_keys_env: str | None  # comma-separated keys, every alias, no limits
    keys: Mapping[str, KeyScope]
    ops_key_env: str | None  # when set, the metrics and the readiness detail require this key
    telemetry: OtlpSpec | None  # null: no OTLP export (/metrics still serves every series)
    retries: int
    connect_timeout_s: float
    read_timeout_s: float
    first_byte_timeout_s: float  # per attempt, until the engine's first byte
    request_timeout_s: float  # the whole request, retries and fallbacks included
    write_timeout_s: float  # a client that reads nothing for this long is given up
    max_body_bytes: int
    max_response_bytes: int  # largest non-streaming engine answer
    max_queue: int
    cooldown_s: float
    eject_after: int  # consecutive failures before an endpoint cools down
    discovery_interval_s: float  # between DNS lookups of a backend's discovery name
    balance: str  # round_robin | least_inflight
    on_overlong_prompt: str  # reject | truncate

    @property
    def secret_envs(self) -> tuple[str, ...]:
        """Every environment variable holding a key the gateway checks, sorted."""
        names = {self.api_keys_env, self.ops_key_env, *(k.env for k in self.keys.values())}
        return tuple(sorted(n for n in names if n))


@record
class Discovery:
    """A DNS name whose A/AAAA records are the backend's endpoints, one per pod or container
    (a headless Service on Kubernetes, a replicated service on compose)."""

    host: str
    port: int
    scheme: str  # http | https


@record
class Backend:
    """One engine behind the gateway: its kind and the base URLs of its endpoints."""

    id: str = name_field()
    engine: str  # ollama | vllm | llamacpp | ray (Ray Serve LLM: one Serve endpoint for every model, adapters loaded on demand)
    endpoints: tuple[str, ...]  # base URLs, without /v1; with discovery, used until the first lookup answers
    api_key_env: str | None
    discovery: Discovery | None  # None: endpoints are fixed
    runtime_lora: bool  # the gateway loads released adapters into every endpoint (vLLM) and unloads retired ones


@record
class AdapterRef:
    """The LoRA adapter an alias serves, and whether a run of it is released."""

    name: str
    released: bool
    run: str | None  # the released run id
    path: str | None  # where the engine loads the run's adapter from: vLLM (a path, loaded at run time), Ray (the run's s3:// folder)
    slot: int | None  # the engine's adapter id, selected per request (llama.cpp's --lora order)


@record
class Route:
    """What one alias (the model name clients send) resolves to."""

    name: str = name_field()
    backend: str
    model: str  # the model name sent upstream
    adapter: AdapterRef | None
    context: int
    max_output_tokens: int
    system: str | None
    params: Mapping[str, Any]  # default sampling parameters, OpenAI names
    fallbacks: tuple[str, ...]
    task: str  # chat | embedding

    @property
    def servable(self) -> bool:
        """False while the alias's adapter is declared but not released."""
        return self.adapter is None or self.adapter.released


@record
class GatewayRoutes:
    """The whole routing table of one deployment."""

    deployment: str
    hardware: HardwareInfo
    gateway: GatewaySettings
    backends: Mapping[str, Backend]
    aliases: Mapping[str, Route]


def _check(routes: GatewayRoutes, report: Reporter) -> None:
    for name, route in routes.aliases.items():
        at = ("aliases", name)
        if route.backend not in routes.backends:
            report.error(at + ("backend",), f"unknown backend {route.backend!r}{did_you_mean(route.backend, routes.backends)}")
        if route.max_output_tokens > route.context:
            report.error(at + ("max_output_tokens",), f"must not exceed context ({route.context}); got {route.max_output_tokens}")
        for i, fallback in enumerate(route.fallbacks):
            if fallback == name:
                report.error(at + ("fallbacks", i), "an alias cannot fall back to itself")
            elif fallback not in routes.aliases:
                report.error(at + ("fallbacks", i), f"unknown alias {fallback!r}{did_you_mean(fallback, routes.aliases)}")
    for name, key in routes.gateway.keys.items():
        for i, alias in enumerate(key.aliases or ()):
            if alias not in routes.aliases:
                report.error(("gateway", "keys", name, "aliases", i), f"unknown alias {alias!r}{did_you_mean(alias, routes.aliases)}")
    for name, backend in routes.backends.items():
        seen: set[str] = set()
        for i, url in enumerate(backend.endpoints):
            if url.rstrip("/") in seen:
                report.error(("backends", name, "endpoints", i), f"duplicate endpoint {url!r}")
            seen.add(url.rstrip("/"))


ROUTES = Contract(
    kind="GatewayRoutes",
    root=GatewayRoutes,
    schema_file="gateway-routes.schema.json",
    format="yaml",
    remedy="run `vilms build`",
    check=_check,
)
