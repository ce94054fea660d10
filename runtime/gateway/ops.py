"""Readiness, and its detail behind the ops key (:class:`auth.OpsKey`) when there is one.

``gateway.ops_key_env`` names a variable holding the ops key (``Authorization: Bearer
<key>``, compared in constant time). With it set, ``/metrics`` answers 401 without the key
and the readiness endpoint shows its detail (endpoint URLs, failures, in-flight counts) only with it;
its status code stays public for probes. Without an ops key both are open, and the
readiness body names backends and counts, never an endpoint URL.

Readiness is the gateway's own state: routes loaded and not draining. Upstream health is
not readiness (a pod would leave its Service because an engine answered 500s, and the local
supervisor would restart a gateway that is fine); it is in the body and in the
``vilms_gateway_endpoint_*`` metrics. When every endpoint of an alias and of each of its
fallbacks is ejected, the body says ``"status": "degraded"`` (HTTP 200 still) and, where
the detail shows, names those aliases in ``unservable``.
"""

from __future__ import annotations

import time
from typing import Any

from .table import RoutingTable


def readiness(table: RoutingTable, draining: bool, authorization: str | None) -> tuple[int, dict[str, Any]]:
    """(status, body) of the readiness endpoint (facts.gateway.READY_PATH)."""
    ready = not draining
    now = time.monotonic()
    unservable = _unservable(table, now)
    body: dict[str, Any] = {"status": "not_ready" if not ready else "degraded" if unservable else "ready",
                            "draining": draining}
    ops = table.ops
    authorized = ops.enabled and ops.allows(authorization)
    if ops.enabled and not authorized:
        return (200 if ready else 503), body
    if unservable:
        body["unservable"] = unservable
    body["deployment"] = table.routes.deployment
    backends: dict[str, Any] = {}
    for bid, route in sorted(table.backends.items()):
        endpoints = route.balancer.endpoints
        ejected = sum(1 for e in endpoints if e.cooling(now))
        entry: dict[str, Any] = {"engine": route.backend.engine, "endpoints": len(endpoints),
                                 "up": len(endpoints) - ejected, "ejected": ejected}
        if route.backend.discovery is not None:
            entry["discovered"] = route.members.discovered  # False: the static endpoints, until DNS answers
        if route.lora:
            entry["adapters"] = {name: len(b.endpoints) for name, b in sorted(route.lora.items())}  # confirmed on
        if authorized:
            entry["detail"] = [{"url": e.label, "up": not e.cooling(now), "consecutive_failures": e.failures,
                                "in_flight": e.inflight} for e in endpoints]
        backends[bid] = entry
    body["backends"] = backends
    return (200 if ready else 503), body


def _unservable(table: RoutingTable, now: float) -> list[str]:
    """Aliases whose backend and every fallback's backend have all their endpoints ejected."""
    def down(name: str) -> bool:
        alias = table.aliases.get(name)
        route = table.backends.get(alias.backend) if alias is not None else None
        return route is not None and bool(route.balancer.endpoints) and route.balancer.all_cooling(now)

    return sorted(name for name, alias in table.aliases.items()
                  if down(name) and all(down(f) for f in alias.fallbacks if f in table.aliases))
