"""The routing table: validated routes plus everything derived from them for serving.

A table is immutable once built. Reloading builds a new one and swaps a single
reference, so a request keeps the table it started with until it finishes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from vilms.compiler.contracts.routes import Backend, GatewayRoutes, GatewaySettings, Route
from vilms.compiler.errors import ActionError

from .auth import Caller, KeyCheck, OpsKey
from .balancer import Balancer, EndpointPool
from .membership import BackendMembers, Membership
from .upstream import Engine, engine_for, lora_slots


@dataclass(frozen=True, slots=True)
class BackendRoute:
    backend: Backend
    engine: Engine
    balancer: Balancer
    headers: Mapping[str, str]  # sent upstream: content type, and the backend's own API key if any
    members: BackendMembers  # its endpoints now (static or discovered) and which hold which adapter
    # runtime_lora backends: per adapter name (the route's model), a balancer over the endpoints
    # that confirmed holding it
    lora: Mapping[str, Balancer]


@dataclass(frozen=True, slots=True)
class RoutingTable:
    routes: GatewayRoutes
    keys: KeyCheck
    ops: OpsKey
    backends: Mapping[str, BackendRoute]
    models_body: bytes
    aliases: Mapping[str, Route]  # every alias; in a scoped key's view, only the key's
    # Per scoped key (by name), the table as that key sees it: only its aliases, so its
    # fallbacks, its 404s and its /v1/models stay inside its scope.
    views: Mapping[str, RoutingTable]

    @property
    def settings(self) -> GatewaySettings:
        return self.routes.gateway

    def seen_by(self, caller: Caller) -> RoutingTable:
        return self if caller.aliases is None else self.views[caller.name]


def build_table(routes: GatewayRoutes, pool: EndpointPool, environ: Mapping[str, str] | None = None,
                previous: RoutingTable | None = None, membership: Membership | None = None) -> RoutingTable:
    """Resolve env references and endpoint state; raise :class:`ActionError` if a key is missing.
    Named keys that ``previous`` also has keep what they used of their limits; backends whose
    endpoints and discovery are unchanged keep their members from ``membership``."""
    environ = os.environ if environ is None else environ
    membership = Membership(pool) if membership is None else membership
    adapters = runtime_adapters(routes)
    keys = KeyCheck.from_settings(routes.gateway, environ, previous.keys if previous is not None else None)
    backends: dict[str, BackendRoute] = {}
    for backend in routes.backends.values():
        headers = {"Content-Type": "application/json"}
        if backend.api_key_env:
            secret = environ.get(backend.api_key_env, "").strip()
            if not secret:
                raise ActionError(
                    f"backends.{backend.id}.api_key_env names {backend.api_key_env}, "
                    "but that environment variable is unset or empty",
                    hint=f"export {backend.api_key_env}=<the key the {backend.engine} server expects>",
                )
            if "\r" in secret or "\n" in secret:
                raise ActionError(f"{backend.api_key_env} contains a line break; an API key cannot")
            headers["Authorization"] = f"Bearer {secret}"
        members = membership.members_for(backend)
        strategy = routes.gateway.balance
        lora = {name: Balancer(members.adapter(name), strategy) for name in adapters.get(backend.id, {})}
        engine = engine_for(backend.engine, lora_slots(routes.aliases, backend.id))
        backends[backend.id] = BackendRoute(backend=backend, engine=engine, balancer=Balancer(members.all, strategy),
                                            headers=headers, members=members, lora=lora)
    ops = OpsKey.from_env(routes.gateway.ops_key_env, environ)
    table = RoutingTable(routes=routes, keys=keys, ops=ops, backends=backends, models_body=_models_body(routes.aliases),
                         aliases=routes.aliases, views={})
    views = {}
    for caller in keys.callers.values():
        if caller.aliases is not None:
            scoped = {name: route for name, route in routes.aliases.items() if name in caller.aliases}
            views[caller.name] = replace(table, aliases=scoped, models_body=_models_body(scoped))
    return replace(table, views=views)


def runtime_adapters(routes: GatewayRoutes) -> dict[str, dict[str, str | None]]:
    """Per ``runtime_lora`` backend: the adapters its released aliases use, name (the route's
    ``model``) → path to load it from (None: the engine must already hold it)."""
    out: dict[str, dict[str, str | None]] = {}
    for alias in sorted(routes.aliases.values(), key=lambda a: a.name):
        backend = routes.backends.get(alias.backend)
        if alias.adapter is not None and alias.servable and backend is not None and backend.runtime_lora:
            names = out.setdefault(backend.id, {})
            if names.get(alias.model) is None:
                names[alias.model] = alias.adapter.path
    return out


def _models_body(aliases: Mapping[str, Route]) -> bytes:
    data = [
        {"id": alias.name, "object": "model", "created": 0, "owned_by": "vilms",
         "vilms": {"task": alias.task, "context": alias.context, "max_output_tokens": alias.max_output_tokens,
                   "adapter": alias.adapter.name if alias.adapter else None,
                   "released": alias.servable}}
        for alias in sorted(aliases.values(), key=lambda a: a.name)
    ]
    return json.dumps({"object": "list", "data": data}).encode()
