"""Forwarding one request: alias → fallbacks → endpoints, retries before the first byte.

Semantics (documented in docs/gateway.md):

* The requested alias is resolved first, then its ``fallbacks`` in order (each a full
  alias with its own backend, trimming and retries). A fallback is used when the alias
  before it could not answer: adapter not released, every attempt failed, or (for a
  fallback only) the request does not fit it.
* An alias gets ``retries + 1`` attempts (1 if every endpoint of its backend is cooling
  down). Each attempt prefers an endpoint not yet tried; re-trying the same endpoint
  waits ``BACKOFF_S * 2**n`` first.
* Retryable: connection refused/reset, connect or read timeout, HTTP 429 and 5xx, an
  error line from the engine — all only until the first byte reaches the client. A
  failed endpoint cools down for ``cooldown_s``. Other 4xx answers go straight back.
* Streaming responses are committed once the first translated chunk is ready; a later
  upstream failure ends the stream with an SSE error event and no ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import orjson

from vilms.compiler.contracts.routes import Route

from .apierrors import ApiError, normalize_upstream_error
from .balancer import Balancer, Endpoint
from .defaults import apply_defaults
from .httpserver import Request, Response, StreamResponse
from .metrics import GatewayMetrics
from .table import BackendRoute, RoutingTable
from .trimming import fit_request
from .upstream.base import UpstreamCall, UpstreamStreamError
from .upstream.httpclient import ConnectError, Disconnected, Pool, ReadTimeout, UpstreamError
from .upstream.httpclient import Response as UpstreamResponse

log = logging.getLogger("vilms.gateway")

BACKOFF_S = 0.05
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(slots=True)
class Failure:
    """One alias could not answer; ``status``/``body`` describe the last thing that went wrong."""

    kind: str
    status: int
    message: str
    body: bytes | None = None


class Exchange:
    """Per-request bookkeeping for headers, metrics and the log line."""

    __slots__ = ("t0", "alias", "backend", "notes", "waited", "status", "retries", "fallback_from", "stream",
                 "prompt_tokens", "completion_tokens", "ratelimit")

    def __init__(self) -> None:
        self.t0 = perf_counter()
        self.alias = "-"
        self.backend = "-"
        self.notes: list[str] = []
        self.waited = 0.0  # seconds spent waiting on upstreams (and backoff), not gateway work
        self.status = 0
        self.retries = 0
        self.fallback_from: str | None = None
        self.stream = False
        self.prompt_tokens: int | None = None  # the engine's usage, when it reports one
        self.completion_tokens: int | None = None
        self.ratelimit: dict[str, str] | None = None  # the key's x-ratelimit-* headers

    def headers(self) -> dict[str, str]:
        overhead_ms = (perf_counter() - self.t0 - self.waited) * 1000.0
        headers = {"x-vilms-alias": self.alias, "x-vilms-backend": self.backend,
                   "x-vilms-overhead-ms": f"{overhead_ms:.3f}"}
        if self.notes:
            headers["x-vilms-trimmed"] = ", ".join(self.notes)
        if self.fallback_from:
            headers["x-vilms-fallback-from"] = self.fallback_from
        if self.ratelimit:
            headers.update(self.ratelimit)
        return headers


async def forward(request: Request, table: RoutingTable, pool: Pool,
                  metrics: GatewayMetrics, kind: str, body: dict[str, Any], ex: Exchange) -> Response | StreamResponse:
    """Answer ``body`` (already parsed) for endpoint ``kind``: chat, completions or embeddings."""
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "'model' is required: send the name of an alias (see GET /v1/models).", param="model")
    primary = table.aliases.get(name)
    if primary is None:
        raise ApiError(404, f"The model '{name}' does not exist; known aliases: {', '.join(sorted(table.aliases))}.",
                       param="model", code="model_not_found")
    ex.alias = primary.name
    want = "embedding" if kind == "embeddings" else "chat"
    if primary.task != want:
        raise ApiError(400, f"Alias '{name}' serves {primary.task} requests, not {kind}.", param="model",
                       code="wrong_task")
    ex.stream = bool(body.get("stream")) and kind != "embeddings"
    chain = [primary] + [table.aliases[f] for f in primary.fallbacks if f in table.aliases]
    failure: Failure | None = None
    for position, alias in enumerate(chain):
        if alias.task != want:
            continue
        if not alias.servable:
            assert alias.adapter is not None
            failure = Failure("adapter_not_released", 503,
                              f"Alias '{alias.name}' uses adapter '{alias.adapter.name}', which is not released yet "
                              f"(set adapters.{alias.adapter.name}.release, or `vilms rollout`).")
            continue
        route = table.backends[alias.backend]
        try:
            call, notes = _prepare(kind, body, alias, route, table.settings.on_overlong_prompt)
        except ApiError:
            if position == 0:
                raise
            continue  # the request does not fit this fallback; try the next one
        ex.alias, ex.backend, ex.notes = alias.name, alias.backend, notes
        if position:
            ex.fallback_from = primary.name
        result = await _try_alias(request, table, pool, metrics, kind, alias, route, call, ex)
        if isinstance(result, (Response, StreamResponse)):
            if position:
                metrics.fallbacks.inc(primary.name, alias.name)
            if notes:
                for note in notes:
                    metrics.trimmed.inc(alias.name, note.partition("=")[0])
            return result
        failure = result
    raise _failure_error(failure)


def _prepare(kind: str, body: dict[str, Any], alias: Route, route: BackendRoute,
             mode: str) -> tuple[UpstreamCall, list[str]]:
    payload = dict(body)
    apply_defaults(payload, alias, kind)
    notes = fit_request(payload, alias, kind, mode)
    call = route.engine.prepare(kind, payload, alias)
    return call, notes + call.notes


def _failure_error(failure: Failure | None) -> ApiError:
    if failure is None:
        return ApiError(503, "No alias in the fallback chain can serve this request.", code="no_backend")
    if failure.kind == "adapter_not_released":
        return ApiError(503, failure.message, code="adapter_not_released", type="server_error")
    return ApiError(failure.status, failure.message, code=f"upstream_{failure.kind}", type="server_error")


async def _try_alias(request: Request, table: RoutingTable, pool: Pool, metrics: GatewayMetrics,
                     kind: str, alias: Route, route: BackendRoute, call: UpstreamCall,
                     ex: Exchange) -> Response | StreamResponse | Failure:
    balancer = route.balancer
    settings = table.settings
    attempts = 1 if balancer.all_cooling() else settings.retries + 1
    data = orjson.dumps(call.payload)
    tried: set[str] = set()
    failure: Failure = Failure("unavailable", 502, "no attempt was made")
    for attempt in range(attempts):
        endpoint = balancer.pick(tried)
        if attempt:
            ex.retries += 1
            metrics.retries.inc(alias.name, alias.backend)
            if endpoint.url in tried:
                pause = BACKOFF_S * (2 ** (attempt - 1))
                ex.waited += pause
                await asyncio.sleep(pause)
        tried.add(endpoint.url)
        endpoint.inflight += 1
        try:
            result = await _attempt(request, pool, table, kind, route, endpoint, call, data, ex)
        finally:
            endpoint.inflight -= 1
        if isinstance(result, Failure):
            failure = result
            metrics.upstream_errors.inc(alias.name, alias.backend, result.kind)
            Balancer.failed(endpoint, settings.cooldown_s)
            log.warning("upstream %s failed for alias %s: %s (%s)", endpoint.url, alias.name, result.kind,
                        result.message)
            continue
        if endpoint.failures:
            Balancer.succeeded(endpoint)
        if ex.status == 502:  # a stream that broke after its first byte
            metrics.upstream_errors.inc(alias.name, alias.backend, "midstream")
        return result
    return failure


async def _attempt(request: Request, pool: Pool, table: RoutingTable, kind: str,
                   route: BackendRoute, endpoint: Endpoint, call: UpstreamCall, data: bytes,
                   ex: Exchange) -> Response | StreamResponse | Failure:
    url = endpoint.url + call.path
    settings = table.settings
    started = perf_counter()
    try:
        async with pool.post(url, data, route.headers, settings.connect_timeout_s,
                             settings.read_timeout_s) as upstream:
            if upstream.status != 200:
                raw = await upstream.read()
                ex.waited += perf_counter() - started
                return _status_outcome(upstream.status, raw, ex)
            if not call.stream:
                raw = await upstream.read()
                ex.waited += perf_counter() - started
                try:
                    out = route.engine.translate(kind, call, raw)
                except UpstreamStreamError as exc:
                    return Failure("engine_error", 502, str(exc))
                ex.status = 200
                return Response(out, headers=ex.headers())
            return await _stream(request, upstream, route, kind, call, ex, started)
    except ReadTimeout:
        ex.waited += perf_counter() - started
        return Failure("timeout", 504, f"upstream {endpoint.url} did not answer in time")
    except ConnectError as exc:
        ex.waited += perf_counter() - started
        return Failure("connect", 502, f"cannot connect to upstream {endpoint.url}: {exc}")
    except Disconnected as exc:
        ex.waited += perf_counter() - started
        return Failure("disconnect", 502, f"upstream {endpoint.url} closed the connection: {exc}")


def _status_outcome(status: int, raw: bytes, ex: Exchange) -> Response | StreamResponse | Failure:
    body = normalize_upstream_error(status, raw)
    if status == 429 or status >= 500:
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"upstream returned HTTP {status}"
        return Failure(f"status_{status}", status, str(message), body)
    ex.status = status  # a client error: the same request would fail anywhere; pass it back
    return Response(body, status, headers=ex.headers())


async def _stream(request: Request, upstream: UpstreamResponse, route: BackendRoute, kind: str,
                  call: UpstreamCall, ex: Exchange, started: float) -> Response | StreamResponse | Failure:
    translator = route.engine.stream_translator(kind, call)
    content = upstream
    first = b""
    try:
        while not first:  # before the first byte goes out, any failure is retryable
            chunk = await content.readany()
            if not chunk:
                first = translator.finish()
                if not first:
                    return Failure("empty_stream", 502, "upstream ended the stream without data")
                break
            first = translator.feed(chunk)
    except UpstreamStreamError as exc:
        return Failure("engine_error", 502, str(exc))
    finally:
        ex.waited += perf_counter() - started
    ex.status = 200
    response = StreamResponse(200, {**SSE_HEADERS, **ex.headers()})
    await response.prepare(request)
    await response.write(first)
    while True:
        try:
            chunk = await content.readany()
            data = translator.feed(chunk) if chunk else translator.finish()
        except (UpstreamStreamError, UpstreamError) as exc:
            log.warning("upstream stream for alias %s broke after the first byte: %r", ex.alias, exc)
            event = {"error": {"message": f"The upstream stream was interrupted: {exc or type(exc).__name__}",
                               "type": "server_error", "param": None, "code": "upstream_stream_interrupted"}}
            await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
            ex.status = 502  # the log and metrics record the broken stream; the client already saw 200
            break
        if data:
            await response.write(data)
        if not chunk:
            break
    await response.write_eof()
    return response
