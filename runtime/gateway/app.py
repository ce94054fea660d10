"""The aiohttp application: OpenAI routes, health, readiness and metrics."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp import web

from .apierrors import ApiError
from .proxy import Exchange, forward
from .state import GatewayState
from .telemetry import Telemetry
from .upstream.httpclient import Pool

access_log = logging.getLogger("vilms.gateway.access")

STATE: web.AppKey[GatewayState] = web.AppKey("state", GatewayState)
POOL: web.AppKey[Pool] = web.AppKey("pool", Pool)
TELEMETRY: web.AppKey[Telemetry] = web.AppKey("telemetry", Telemetry)
_NO_BODY_LIMIT = 1 << 40  # the per-table max_body_bytes is enforced in read_json


def create_app(state: GatewayState, telemetry: Telemetry | None = None) -> web.Application:
    app = web.Application(client_max_size=_NO_BODY_LIMIT, handler_args={"max_field_size": 16384})
    app[STATE] = state
    app[TELEMETRY] = telemetry or Telemetry()
    app.router.add_post("/v1/chat/completions", _endpoint("chat"))
    app.router.add_post("/v1/completions", _endpoint("completions"))
    app.router.add_post("/v1/embeddings", _endpoint("embeddings"))
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{name}", model)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(_upstream_pool)
    return app


async def _upstream_pool(app: web.Application):  # type: ignore[no-untyped-def]
    pool = Pool()
    app[POOL] = pool
    yield
    pool.close()
    app[TELEMETRY].shutdown()


def _endpoint(kind: str):  # type: ignore[no-untyped-def]
    route = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}[kind]

    async def handler(request: web.Request) -> web.StreamResponse:
        return await _handle(request, kind, route)

    return handler


async def _handle(request: web.Request, kind: str, route: str) -> web.StreamResponse:
    ex = Exchange()
    app = request.app
    state = app[STATE]
    table = state.table  # this request finishes on this table, even if routes reload meanwhile
    counted = False
    try:
        if state.draining:
            raise ApiError(503, "The gateway is shutting down.", code="shutting_down")
        table.keys.check(request.headers.get("Authorization"))
        if state.inflight >= table.settings.max_queue:
            raise ApiError(429, f"The gateway is at its limit of {table.settings.max_queue} requests in flight; "
                                "retry shortly.", code="queue_full", headers={"Retry-After": "1"})
        state.inflight += 1
        counted = True
        body = await read_json(request, table.settings.max_body_bytes)
        return await forward(request, table, app[POOL], state.metrics, kind, body, ex)
    except ApiError as err:
        ex.status = err.status
        return err.response(ex.headers())
    finally:
        if counted:
            state.inflight -= 1
        _record(app, route, ex)


def _record(app: web.Application, route: str, ex: Exchange) -> None:
    elapsed = time.perf_counter() - ex.t0
    status = ex.status or 499  # 499: the client went away before an answer
    metrics = app[STATE].metrics
    metrics.requests.inc(ex.alias, ex.backend, str(status))
    metrics.latency.observe(elapsed, ex.alias, ex.backend)
    metrics.overhead.observe(max(0.0, elapsed - ex.waited), ex.alias, ex.backend)
    if access_log.isEnabledFor(logging.INFO):
        access_log.info("%s alias=%s backend=%s status=%d ms=%.1f retries=%d%s%s", route, ex.alias, ex.backend,
                        status, elapsed * 1000.0, ex.retries,
                        f" fallback_from={ex.fallback_from}" if ex.fallback_from else "",
                        " stream=1" if ex.stream else "")
    telemetry = app[TELEMETRY]
    if telemetry.enabled:
        telemetry.record(route, ex.t0, {"vilms.alias": ex.alias, "vilms.backend": ex.backend,
                                        "http.response.status_code": status, "vilms.retries": ex.retries})


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object, refusing bodies over ``limit`` bytes with 413."""
    too_large = ApiError(413, f"Request body exceeds the gateway limit of {limit} bytes.", code="body_too_large")
    length = request.content_length
    if length is not None:
        if length > limit:
            raise too_large
        raw = await request.read()
    else:
        parts: list[bytes] = []
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
            if total > limit:
                raise too_large
            parts.append(chunk)
        raw = b"".join(parts)
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


async def models(request: web.Request) -> web.Response:
    table = request.app[STATE].table
    try:
        table.keys.check(request.headers.get("Authorization"))
    except ApiError as err:
        return err.response()
    return web.Response(body=table.models_body, content_type="application/json")


async def model(request: web.Request) -> web.Response:
    table = request.app[STATE].table
    name = request.match_info["name"]
    try:
        table.keys.check(request.headers.get("Authorization"))
        if name not in table.aliases:
            raise ApiError(404, f"The model '{name}' does not exist.", param="model", code="model_not_found")
    except ApiError as err:
        return err.response()
    entry = next(m for m in json.loads(table.models_body)["data"] if m["id"] == name)
    return web.json_response(entry)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    table = state.table
    backends = {}
    for bid, route in sorted(table.backends.items()):
        endpoints = route.balancer.endpoints
        now = time.monotonic()
        cooling = sum(1 for e in endpoints if e.cooling(now))
        backends[bid] = {"engine": route.backend.engine, "endpoints": len(endpoints),
                         "cooling_down": cooling}
    ready = not state.draining and any(b["cooling_down"] < b["endpoints"] for b in backends.values())
    body = {"status": "ready" if ready else "not_ready", "draining": state.draining,
            "deployment": table.routes.deployment, "backends": backends}
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    text = request.app[STATE].metrics.render()
    return web.Response(body=text.encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8",
                                                     "Cache-Control": "no-cache"})

