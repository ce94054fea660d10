"""Forwarding one request: alias → fallbacks → endpoints, retries before the first byte.

Semantics (documented in docs/gateway.md):

* The whole request, retries and fallbacks included, has ``request_timeout_s``; when it
  runs out the answer is a 504 ``request_timeout`` (a stream already under way ends with
  an SSE error event). Each attempt waits at most ``first_byte_timeout_s`` for the engine
  to start answering, then ``read_timeout_s`` per gap.
* The requested alias is resolved first, then its ``fallbacks`` in order (each a full
  alias with its own backend, trimming and retries). A fallback is used when the alias
  before it could not answer: adapter not released, every attempt failed, or (for a
  fallback only) the request does not fit it.
* An alias gets ``retries + 1`` attempts (1 if every endpoint of its backend is ejected).
  A retry goes to another endpoint than the one that just failed whenever the backend has
  one (untried first). Endpoint-level failures (connect, timeout, disconnect, 429, 502,
  503, 504, an answer that is not valid or too large, an engine error line) may go back to
  the same endpoint, after ``BACKOFF_S * 2**n``; an HTTP 500 (or another 5xx) may be the
  request's own fault and is never sent again to an endpoint that answered it.
* Every failed attempt counts toward the endpoint's ejection (``eject_after`` in a row,
  then ``cooldown_s``); any other answer resets the count.
* Retries happen only until the first byte reaches the client. Non-streaming answers are
  read whole (at most ``max_response_bytes``) and must be a JSON object. Streams are
  committed at the first translated chunk; a later failure, a stream that ends without its
  end marker, or the end of a shutdown drain ends the stream with an SSE error event and
  no ``[DONE]``, recorded as 502 (503 for the drain).
* An alias with an adapter on a ``runtime_lora`` backend goes only to endpoints that
  confirmed holding the adapter (:mod:`.adapters`); with none yet, the alias fails with
  ``adapter_loading`` (503) and its fallbacks are tried. An engine that answers 404 for the
  adapter (it restarted) leaves the adapter's set and the attempt goes to another endpoint.
* Ray Serve LLM loads an adapter (``<model>:<run>``) itself on its first request, from the
  artifact store: nothing is loaded ahead, and a release is the next request's new name. A
  404 for such an alias means the run is not in the store: ``adapter_missing`` (503), no
  retry (every replica reads the same store), and the fallbacks are tried.
* Clients see the backend id at most, never an endpoint URL or an engine's error text;
  logs get a summary (kind, status, length), never a body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import orjson

from vilms.compiler.contracts.routes import GatewaySettings, Route
from vilms.compiler.facts import llamacpp as llamacpp_facts
from vilms.compiler.facts import ray as ray_facts

from .apierrors import ApiError, normalize_upstream_error
from .balancer import Balancer, Endpoint
from .defaults import apply_defaults
from .fields import vouch
from .httpserver import Request, Response, StreamResponse
from .metrics import GatewayMetrics
from .streaming import SSE_HEADERS, ClientStalled, TimedStream, error_event
from .table import BackendRoute, RoutingTable
from .trimming import fit_request
from .upstream.base import BadResponse, UpstreamCall, UpstreamStreamError
from .upstream.httpclient import (
    ConnectError,
    DeadlineExceeded,
    Disconnected,
    Pool,
    ReadTimeout,
    ShuttingDown,
    TooLarge,
    UpstreamError,
)
from .upstream.httpclient import Response as UpstreamResponse

log = logging.getLogger("vilms.gateway")

BACKOFF_S = 0.05
ERROR_BODY_LIMIT = 64 * 1024  # an engine's error answer is read up to this much
_SAME_ENDPOINT_OK = frozenset((429, 502, 503, 504))  # statuses that say "busy or unreachable", not "your request"
OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}  # gen_ai.operation.name
_STREAM_ERRORS = frozenset(("midstream", "request_timeout", "shutdown"))  # a committed stream that broke


@dataclass(slots=True)
class Failure:
    """One attempt or alias could not answer. ``message`` is safe for clients (no URL, no engine text)."""

    kind: str
    status: int
    message: str
    final: bool = False  # no further attempt or fallback: the deadline passed, or the gateway is stopping
    same_endpoint_ok: bool = True  # may be retried on the endpoint that failed
    length: int = 0  # bytes of the engine's answer, for the log


class Exchange:
    """Per-request bookkeeping for headers, metrics, quotas and the log line.

    ``prompt_tokens`` / ``completion_tokens``: the engine's usage for the answer that was
    sent (None when unknown, e.g. a broken stream).
    """

    __slots__ = ("t0", "alias", "backend", "engine", "notes", "waited", "status", "retries", "fallback_from", "stream",
                 "prompt_tokens", "completion_tokens", "ratelimit", "stream_end", "first_chunk")

    def __init__(self) -> None:
        self.t0 = perf_counter()
        self.alias = "-"
        self.backend = "-"
        self.engine = "-"  # the backend's engine (metrics and logs)
        self.notes: list[str] = []
        self.waited = 0.0  # seconds spent waiting on upstreams (and backoff), not gateway work
        self.status = 0
        self.retries = 0
        self.fallback_from: str | None = None
        self.stream = False
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.ratelimit: dict[str, str] | None = None  # the key's x-ratelimit-* headers
        self.stream_end: str | None = None  # why a committed stream ended early: midstream, write_timeout, ...
        self.first_chunk: float | None = None  # this attempt: seconds from sending to the engine's first chunk

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
    loop = asyncio.get_running_loop()  # once: each call costs a getpid() on Python 3.11
    deadline = loop.time() + table.settings.request_timeout_s
    chain = [primary, *(table.aliases[f] for f in primary.fallbacks if f in table.aliases)] if primary.fallbacks \
        else (primary,)
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
        ex.alias, ex.backend, ex.engine, ex.notes = alias.name, alias.backend, route.backend.engine, notes
        if position:
            ex.fallback_from = primary.name
        result = await _try_alias(request, table, pool, metrics, kind, alias, route, call, ex, deadline, loop,
                                  position + 1 < len(chain))
        if isinstance(result, (Response, StreamResponse)):
            if position:
                metrics.fallbacks.inc(primary.name, alias.name)
            if notes:
                for note in notes:
                    metrics.trimmed.inc(alias.name, note.partition("=")[0])
            return result
        failure = result
        if failure.final or failure.kind == "died":  # died: the request may have killed the engine
            break
    raise _failure_error(failure)


def _prepare(kind: str, body: dict[str, Any], alias: Route, route: BackendRoute,
             mode: str) -> tuple[UpstreamCall, list[str]]:
    payload = dict(body)
    apply_defaults(payload, alias, kind)
    notes = fit_request(payload, alias, kind, mode)
    if route.backend.engine == llamacpp_facts.ENGINE:
        notes += vouch(payload, kind)
    call = route.engine.prepare(kind, payload, alias)
    return call, notes + call.notes


def _failure_error(failure: Failure | None) -> ApiError:
    if failure is None:
        return ApiError(503, "No alias in the fallback chain can serve this request.", code="no_backend")
    if failure.kind in ("adapter_not_released", "adapter_loading", "adapter_missing", "request_timeout"):
        return ApiError(failure.status, failure.message, code=failure.kind, type="server_error")
    if failure.kind == "shutdown":
        return ApiError(503, failure.message, code="shutting_down", type="server_error")
    return ApiError(failure.status, failure.message, code=f"upstream_{failure.kind}", type="server_error")


async def _try_alias(request: Request, table: RoutingTable, pool: Pool, metrics: GatewayMetrics,
                     kind: str, alias: Route, route: BackendRoute, call: UpstreamCall,
                     ex: Exchange, deadline: float, loop: asyncio.AbstractEventLoop,
                     fallback: bool = False) -> Response | StreamResponse | Failure:
    balancer = route.balancer
    engine = route.backend.engine
    # an engine that loads adapters itself, on their first request (Ray Serve LLM, from the artifact store)
    on_demand = alias.adapter is not None and engine == ray_facts.ENGINE
    members = None  # set when the alias needs endpoints that hold its adapter
    if alias.adapter is not None and route.lora:
        lora = route.lora.get(alias.model)
        if lora is not None:
            balancer, members = lora, route.members
    settings = table.settings
    cooling = balancer.all_cooling()
    if cooling and fallback and balancer.endpoints:  # every endpoint is ejected: a fallback answers until one comes back
        return Failure("ejected", 503, f"Every endpoint of backend '{alias.backend}' is cooling down after failures.")
    attempts = 1 if cooling else settings.retries + 1
    data = orjson.dumps(call.payload)
    tried: set[str] = set()
    barred: set[str] = set()  # endpoints that answered a 500 for this request
    failure: Failure | None = None
    last: Endpoint | None = None
    for attempt in range(attempts):
        if attempt:
            assert last is not None and failure is not None
            endpoint = balancer.pick(tried, exclude=barred | {last.url})
            if endpoint is None:  # no other endpoint: the same one, if the failure allows it
                if not failure.same_endpoint_ok:
                    break
                endpoint = last
            ex.retries += 1
            metrics.retries.inc(alias.name, alias.backend, engine)
            if endpoint is not last:
                metrics.rotations.inc(alias.name, alias.backend, engine)
            if endpoint.url in tried:
                pause = min(BACKOFF_S * (2 ** (attempt - 1)), deadline - loop.time())
                if pause > 0:
                    ex.waited += pause
                    await asyncio.sleep(pause)
        else:
            endpoint = balancer.pick()
            if endpoint is None:  # no endpoint holds the adapter yet
                return _adapter_loading(alias)
        if loop.time() >= deadline:
            return _deadline_failure(settings)
        tried.add(endpoint.url)
        endpoint.inflight += 1
        started = perf_counter()
        try:
            async with _slot(endpoint, route, ex, deadline, loop):
                result = await _attempt(request, pool, settings, kind, route, endpoint, call, data, ex, deadline)
        except TimeoutError:
            return _deadline_failure(settings)  # the request's deadline passed while it waited for a slot
        finally:
            endpoint.inflight -= 1
        _observe(metrics, kind, alias, engine, endpoint, call, ex, result, perf_counter() - started,
                 members is not None or on_demand)
        if members is not None and type(result) is Response and result.status == 404:
            members.lost(endpoint, alias.model)  # the engine no longer holds the adapter: it restarted
            metrics.upstream_errors.inc(alias.name, alias.backend, engine, "adapter_missing")
            log.warning("endpoint does not hold its adapter any more: alias=%s backend=%s engine=%s endpoint=%s",
                        alias.name, alias.backend, engine, endpoint.label)
            failure, last = _adapter_loading(alias), endpoint
            barred.add(endpoint.url)
            continue
        if on_demand and type(result) is Response and result.status == 404:
            # Ray Serve LLM loads "<model>:<run>" from the artifact store on demand; a 404 says the run is not
            # there (or the base model is not served). Every replica reads the same store: no retry; fallbacks.
            metrics.upstream_errors.inc(alias.name, alias.backend, engine, "adapter_missing")
            log.warning("the engine cannot load the alias's adapter: alias=%s backend=%s engine=%s model=%s",
                        alias.name, alias.backend, engine, alias.model)
            return Failure("adapter_missing", 503, f"Alias '{alias.name}': backend '{alias.backend}' cannot load "
                           f"adapter '{alias.adapter.name}' (run {alias.adapter.run or '-'}); is it in the artifact store?",
                           same_endpoint_ok=False)
        if isinstance(result, Failure):
            if result.kind == "request_timeout":
                metrics.upstream_errors.inc(alias.name, alias.backend, engine, "request_timeout")
                return _deadline_failure(settings)
            if result.final:
                return result
            failure, last = result, endpoint
            metrics.upstream_errors.inc(alias.name, alias.backend, engine, result.kind)
            # a read timeout: the endpoint is hung or busy; it cools down at once, so that the next
            # requests go elsewhere instead of waiting again
            ejected = _failed(metrics, endpoint, route, settings, at_once=result.kind == "timeout")
            if not result.same_endpoint_ok:
                barred.add(endpoint.url)
            log.warning("upstream attempt failed: alias=%s backend=%s engine=%s endpoint=%s kind=%s status=%d bytes=%d%s",
                        alias.name, alias.backend, engine, endpoint.label, result.kind, result.status, result.length,
                        " (endpoint ejected)" if ejected else "")
            if result.kind == "died":
                return result  # the request may have killed it: not sent again, not to a fallback either
            continue
        end = ex.stream_end
        if end is None or end == "write_timeout":
            if endpoint.failures:
                Balancer.succeeded(endpoint)
            if end:
                metrics.write_timeouts.inc(alias.name, alias.backend, engine)
        elif end == "midstream":
            metrics.upstream_errors.inc(alias.name, alias.backend, engine, end)
            _failed(metrics, endpoint, route, settings)
        elif end == "request_timeout":
            metrics.upstream_errors.inc(alias.name, alias.backend, engine, end)
        return result
    assert failure is not None
    return failure


def _failed(metrics: GatewayMetrics, endpoint: Endpoint, route: BackendRoute, settings: GatewaySettings,
            at_once: bool = False) -> bool:
    """Count a failed attempt against ``endpoint``; count an ejection when it starts cooling down."""
    now = time.monotonic()
    was_cooling = endpoint.cooling(now)
    ejected = Balancer.failed(endpoint, settings.cooldown_s, now, eject_after=1 if at_once else settings.eject_after)
    if ejected and not was_cooling:
        metrics.ejections.inc(route.backend.id, route.backend.engine, endpoint.label)
    return ejected


def _observe(metrics: GatewayMetrics, kind: str, alias: Route, engine: str, endpoint: Endpoint, call: UpstreamCall,
             ex: Exchange, result: Response | StreamResponse | Failure, elapsed: float, adapter_404: bool) -> None:
    """The GenAI client metrics of one upstream attempt (its duration, tokens, time to first chunk)."""
    if type(result) is Failure:
        error = result.kind
    elif type(result) is Response and result.status >= 400:
        error = "adapter_missing" if adapter_404 and result.status == 404 else str(result.status)
    elif ex.stream_end in _STREAM_ERRORS:
        error = ex.stream_end or ""
    else:
        error = ""
    answered = call.response_model
    model = "" if error else alias.model if answered == alias.model else \
        metrics.response_model(alias.backend, answered, alias.model)
    op, name, address, port, backend = OPERATIONS[kind], alias.name, endpoint.address, endpoint.port, alias.backend
    metrics.operation_duration.add((op, engine, name, model, address, port, backend, engine, error), elapsed)
    if ex.first_chunk is not None:
        metrics.time_to_first_chunk.add((op, engine, name, model, address, port, backend, engine), ex.first_chunk)
    if not error:
        tokens = metrics.token_usage
        if call.prompt_tokens is not None:
            tokens.add((op, engine, name, model, address, port, backend, engine, "input"), call.prompt_tokens)
        if call.completion_tokens is not None and kind != "embeddings":
            tokens.add((op, engine, name, model, address, port, backend, engine, "output"), call.completion_tokens)


def _adapter_loading(alias: Route) -> Failure:
    return Failure("adapter_loading", 503, f"Alias '{alias.name}' is not ready yet: its adapter is still being "
                   "loaded; retry shortly.", same_endpoint_ok=False)


def _deadline_failure(settings: GatewaySettings) -> Failure:
    return Failure("request_timeout", 504, f"The request did not complete within {settings.request_timeout_s:g} s.",
                   final=True)


async def _attempt(request: Request, pool: Pool, settings: GatewaySettings, kind: str,
                   route: BackendRoute, endpoint: Endpoint, call: UpstreamCall, data: bytes,
                   ex: Exchange, deadline: float) -> Response | StreamResponse | Failure:
    backend = route.backend.id
    started = perf_counter()
    call.prompt_tokens = call.completion_tokens = call.response_model = ex.first_chunk = None
    try:
        async with pool.post(endpoint.url + call.path, data, route.headers, settings.connect_timeout_s,
                             settings.read_timeout_s, settings.first_byte_timeout_s, deadline) as upstream:
            status = upstream.status
            if status != 200:
                try:
                    raw = await upstream.read(ERROR_BODY_LIMIT)
                except TooLarge:
                    raw = b""  # not read on; the connection is closed on the way out
                ex.waited += perf_counter() - started
                return _status_outcome(status, raw, ex, backend)
            if not call.stream:
                if call.aggregate:  # a stream to merge: the engine's first chunk within the first-byte limit
                    upstream.set_timeout(settings.first_byte_timeout_s)
                    first = await upstream.readany()
                    upstream.restore_timeout()
                    raw = first + await upstream.read(max(1, settings.max_response_bytes - len(first))) if first \
                        else first
                else:
                    raw = await upstream.read(settings.max_response_bytes)
                ex.waited += perf_counter() - started
                try:
                    out = route.engine.translate(kind, call, raw)
                except UpstreamStreamError as exc:
                    return _engine_failure(exc, backend, len(raw))
                except Exception:  # a translation that choked on a malformed answer
                    return Failure("bad_response", 502, f"Backend '{backend}' sent an answer that is not valid.",
                                   length=len(raw))
                ex.status = 200
                ex.prompt_tokens, ex.completion_tokens = call.prompt_tokens, call.completion_tokens
                return Response(out, headers=ex.headers())
            return await _stream(request, upstream, route, kind, call, ex, started, settings)
    except UpstreamError as exc:
        ex.waited += perf_counter() - started
        return _transport_failure(exc, backend, route.backend.engine)


@asynccontextmanager
async def _slot(endpoint: Endpoint, route: BackendRoute, ex: Exchange, deadline: float,
                loop: asyncio.AbstractEventLoop) -> AsyncIterator[None]:
    """Hold one of the endpoint's request slots (llama.cpp: :data:`llamacpp_facts.GATEWAY_SLOTS`) while
    the attempt runs; a request waits here, in the gateway (within ``max_queue`` and its deadline),
    not in the engine, so the engine's first-byte limit starts when the engine can start."""
    if route.backend.engine != llamacpp_facts.ENGINE:
        yield
        return
    gate = endpoint.gate
    if gate is None:
        gate = endpoint.gate = asyncio.Semaphore(llamacpp_facts.GATEWAY_SLOTS)
    waited = perf_counter()
    async with asyncio.timeout_at(deadline):
        await gate.acquire()
    ex.waited += perf_counter() - waited
    try:
        yield
    finally:
        gate.release()


def _transport_failure(exc: UpstreamError, backend: str, engine: str) -> Failure:
    if isinstance(exc, DeadlineExceeded):
        return Failure("request_timeout", 504, "", final=True)
    if isinstance(exc, ReadTimeout):  # never again on the same (hung or busy) endpoint; another one or a fallback
        return Failure("timeout", 504, f"Backend '{backend}' did not answer in time.", same_endpoint_ok=False)
    if isinstance(exc, ConnectError):
        return Failure("connect", 502, f"Cannot connect to backend '{backend}'.")
    if isinstance(exc, TooLarge):
        return Failure("too_large", 502, f"Backend '{backend}' sent an answer larger than the gateway accepts.")
    if isinstance(exc, ShuttingDown):
        return Failure("shutdown", 503, "The gateway is shutting down.", final=True)
    if isinstance(exc, Disconnected) and engine == llamacpp_facts.ENGINE:
        # after the request was sent, one local process: the request may be what killed it
        return Failure("died", 502, f"Backend '{backend}' closed the connection while answering; the request was "
                       "not retried because it may have caused that.", same_endpoint_ok=False)
    return Failure("disconnect", 502, f"Backend '{backend}' closed the connection before answering.")


def _engine_failure(exc: UpstreamStreamError, backend: str, length: int = 0) -> Failure:
    if isinstance(exc, BadResponse):
        return Failure("bad_response", 502, f"Backend '{backend}' sent an answer that is not valid.", length=length)
    return Failure("engine_error", 502, f"Backend '{backend}' reported an error.", length=length)


def _status_outcome(status: int, raw: bytes, ex: Exchange, backend: str) -> Response | Failure:
    if status == 429 or status >= 500:
        return Failure(f"status_{status}", status, f"Backend '{backend}' answered HTTP {status}.",
                       same_endpoint_ok=status in _SAME_ENDPOINT_OK, length=len(raw))
    if status < 400:  # 1xx/2xx other than 200, 3xx: not an answer this API gives
        return Failure("bad_response", 502, f"Backend '{backend}' sent an answer that is not valid.", length=len(raw))
    ex.status = status  # a client error: the same request would fail anywhere; pass it back
    return Response(normalize_upstream_error(status, raw), status, headers=ex.headers())


async def _stream(request: Request, upstream: UpstreamResponse, route: BackendRoute, kind: str,
                  call: UpstreamCall, ex: Exchange, started: float,
                  settings: GatewaySettings) -> Response | StreamResponse | Failure:
    translator = route.engine.stream_translator(kind, call)
    backend = route.backend.id
    upstream.set_timeout(settings.first_byte_timeout_s)  # until the first chunk worth sending
    first = b""
    try:
        while not first:  # before the first byte goes out, any failure is retryable
            chunk = await upstream.readany()
            if ex.first_chunk is None and chunk:
                ex.first_chunk = perf_counter() - started
            if not chunk:
                first = translator.finish()
                if not first:
                    return Failure("empty_stream", 502, f"Backend '{backend}' ended the stream without data.")
                break
            first = translator.feed(chunk)
    except UpstreamError:
        raise
    except UpstreamStreamError as exc:
        return _engine_failure(exc, backend)
    except Exception:
        return Failure("bad_response", 502, f"Backend '{backend}' sent a stream that is not valid.")
    finally:
        ex.waited += perf_counter() - started
    upstream.restore_timeout()
    ex.status = 200
    response = TimedStream(200, {**SSE_HEADERS, **ex.headers()}, settings.write_timeout_s)
    try:
        await response.prepare(request)
        await response.write(first)
        while True:
            try:
                chunk = await upstream.readany()
                data = translator.feed(chunk) if chunk else translator.finish()
            except Exception as exc:  # the engine, the connection or the translation failed mid-stream
                ex.stream_end, ex.status, message, code = _broken(exc, backend, settings)
                log.warning("upstream stream ended early: alias=%s backend=%s kind=%s (%s)", ex.alias, backend,
                            ex.stream_end, type(exc).__name__)
                await response.write(error_event(message, code))
                break
            if data:
                await response.write(data)
            if not chunk:
                ex.prompt_tokens, ex.completion_tokens = call.prompt_tokens, call.completion_tokens
                break
        await response.write_eof()
    except ClientStalled:
        ex.stream_end, ex.status = "write_timeout", 499
        request.keep_alive = False
        log.info("client read nothing for %g s: stream given up: alias=%s backend=%s", settings.write_timeout_s,
                 ex.alias, backend)
    except asyncio.CancelledError:
        ex.status = 499  # the client went away mid-stream
        raise
    return response


def _broken(exc: Exception, backend: str, settings: GatewaySettings) -> tuple[str, int, str, str]:
    """(kind, status to record, message, code) for a stream that broke after its first byte."""
    if isinstance(exc, ShuttingDown):
        return "shutdown", 503, "The gateway is shutting down; this answer is incomplete.", "shutting_down"
    if isinstance(exc, DeadlineExceeded):
        return ("request_timeout", 504, f"The request did not complete within {settings.request_timeout_s:g} s; "
                "this answer is incomplete.", "request_timeout")
    return "midstream", 502, f"The stream from backend '{backend}' was interrupted.", "upstream_stream_interrupted"
