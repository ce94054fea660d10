"""The operator's endpoints: readiness detail and metrics, behind the ops key when there is one.

``gateway.ops_key_env`` names a variable holding the ops key (``Authorization: Bearer
<key>``, compared in constant time). With it set, ``/metrics`` answers 401 without the key
and the readiness endpoint shows its detail (endpoint URLs, failures, in-flight counts) only with it;
its status code stays public for probes. Without an ops key both are open, and the
readiness body names backends and counts, never an endpoint URL.

Readiness is the gateway's own state: routes loaded and not draining. Upstream health is
not readiness (a pod would leave its Service because an engine answered 500s); it is in
the body and in the ``vilms_gateway_endpoint_*`` metrics.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Mapping
from typing import Any

from vilms.compiler.errors import ActionError

from .apierrors import ApiError
from .auth import bearer_digest
from .table import RoutingTable


class OpsKey:
    __slots__ = ("_key",)

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    @property
    def enabled(self) -> bool:
        return self._key is not None

    @classmethod
    def from_env(cls, env_name: str | None, environ: Mapping[str, str] | None = None) -> "OpsKey":
        """The key in ``env_name``; refuse one that is unset or empty (the gateway never silently runs open)."""
        if not env_name:
            return cls(None)
        environ = os.environ if environ is None else environ
        key = environ.get(env_name, "").strip()
        if not key:
            raise ActionError(
                f"the gateway's ops key is read from {env_name}, but that environment variable is unset or empty",
                hint=f"export {env_name}=<a key for /metrics and the readiness detail>, or remove ops_key from the "
                     "gateway: section of vilms.yaml to leave both open",
            )
        return cls(hashlib.sha256(key.encode()).digest())  # digests: equal lengths, constant-time compare

    def allows(self, authorization: str | None) -> bool:
        """Whether the header carries the ops key (always true without one)."""
        if self._key is None:
            return True
        return hmac.compare_digest(bearer_digest(authorization), self._key)

    def check(self, authorization: str | None) -> None:
        if not self.allows(authorization):
            if not authorization:
                raise ApiError(401, "Missing ops key: send 'Authorization: Bearer <ops key>'.", code="missing_ops_key")
            raise ApiError(401, "Incorrect ops key provided.", code="invalid_ops_key")


def readiness(table: RoutingTable, draining: bool, ops: OpsKey, authorization: str | None) -> tuple[int, dict[str, Any]]:
    """(status, body) of the readiness endpoint (facts.gateway.READY_PATH)."""
    ready = not draining
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "draining": draining}
    authorized = ops.enabled and ops.allows(authorization)
    if ops.enabled and not authorized:
        return (200 if ready else 503), body
    now = time.monotonic()
    body["deployment"] = table.routes.deployment
    backends: dict[str, Any] = {}
    for bid, route in sorted(table.backends.items()):
        endpoints = route.balancer.endpoints
        ejected = sum(1 for e in endpoints if e.cooling(now))
        entry: dict[str, Any] = {"engine": route.backend.engine, "endpoints": len(endpoints),
                                 "up": len(endpoints) - ejected, "ejected": ejected}
        if authorized:
            entry["detail"] = [{"url": e.label, "up": not e.cooling(now), "consecutive_failures": e.failures,
                                "in_flight": e.inflight} for e in endpoints]
        backends[bid] = entry
    body["backends"] = backends
    return (200 if ready else 503), body
