"""The gateway application: OpenAI routes, health, readiness and metrics, on :mod:`.httpserver`."""

from __future__ import annotations

import json
import logging
import time

from vilms.compiler.facts import gateway as gateway_facts

from .apierrors import ApiError
from .auth import ANONYMOUS, Caller, KeyRejected
from .httpserver import Request, Response, Router, Server, StreamResponse, json_response
from .jsonbody import parse_json
from .ops import readiness
from .proxy import Exchange, forward
from .state import GatewayState
from .telemetry import Telemetry
from .trimming import estimate_request
from .upstream.httpclient import Pool

access_log = logging.getLogger("vilms.gateway.access")


class App:
    """Handlers bound to the live state, the upstream pool and the telemetry exporter."""

    def __init__(self, state: GatewayState, telemetry: Telemetry | None = None) -> None:
        self.state = state
        self.telemetry = telemetry or Telemetry()
        self.pool = Pool()

    def server(self) -> Server:
        router = Router()
        for kind, route in (("chat", "/v1/chat/completions"), ("completions", "/v1/completions"),
                            ("embeddings", "/v1/embeddings")):
            router.add("POST", route, self._endpoint(kind, route))
        router.add("GET", "/v1/models", self.models)
        router.add_prefix("GET", "/v1/models/", self.model)
        router.add("GET", gateway_facts.LIVE_PATH, healthz)
        router.add("GET", gateway_facts.READY_PATH, self.readyz)
        router.add("GET", gateway_facts.METRICS_PATH, self.metrics)
        return Server(router, _error_response, lambda: self.state.table.settings.max_body_bytes)

    def close(self) -> None:
        self.pool.close()
        self.telemetry.shutdown()

    def _endpoint(self, kind: str, route: str):  # type: ignore[no-untyped-def]
        async def handler(request: Request) -> Response | StreamResponse:
            return await self._handle(request, kind, route)

        return handler

    async def _handle(self, request: Request, kind: str, route: str) -> Response | StreamResponse:
        ex = Exchange()
        state = self.state
        table = state.table  # this request finishes on this table, even if routes reload meanwhile
        caller = ANONYMOUS
        counted = False
        body: dict | None = None
        try:
            if state.draining:
                raise ApiError(503, "The gateway is shutting down.", code="shutting_down")
            caller = table.keys.check(request.headers.get("authorization"))
            if state.inflight >= table.settings.max_queue:
                state.metrics.queue_rejections.inc(ex.alias, ex.backend, ex.engine)  # not read yet: "-"
                raise ApiError(429, f"The gateway is at its limit of {table.settings.max_queue} requests in flight; "
                                    "retry shortly.", code="queue_full", headers={"Retry-After": "1"})
            state.inflight += 1
            counted = True
            body = parse_json(request.body)
            if caller.aliases is not None:
                caller.check_model(body.get("model"))  # 403 outside the key's scope
                table = table.views[caller.name]  # the key's view: only its aliases, fallbacks included
            if caller.quota is not None:
                ex.ratelimit = caller.admit(time.monotonic())  # 429 over its limits
            return await forward(request, table, self.pool, state.metrics, kind, body, ex)
        except ApiError as err:
            ex.status = err.status
            if isinstance(err, KeyRejected):
                state.metrics.key_rejections.inc(caller.name, err.reason)
            return err.response(ex.headers())
        finally:
            if counted:
                state.inflight -= 1
            estimate = None
            if ex.prompt_tokens is None and ex.status == 200 and body is not None:
                # answered, and the engine reported no prompt usage (llama.cpp streams never do):
                # the gateway's own estimate, so a key's tpm cannot be bypassed with long prompts
                estimate = estimate_request(kind, body)
            if ex.prompt_tokens is not None or ex.completion_tokens is not None or estimate:
                self._charge(caller, ex, estimate)
            self._record(route, ex, caller)

    def _charge(self, caller: Caller, ex: Exchange, prompt_estimate: int | None = None) -> None:
        """Charge the engine's usage (known once the request, or its stream, has ended); where the
        engine reported no prompt tokens, ``prompt_estimate``."""
        prompt = ex.prompt_tokens if ex.prompt_tokens is not None else prompt_estimate
        prompt, completion = max(0, prompt or 0), max(0, ex.completion_tokens or 0)
        if caller.quota is not None:
            caller.quota.charge(prompt + completion, time.monotonic())
        tokens = self.state.metrics.key_tokens
        tokens.inc(caller.name, "prompt", amount=prompt)
        tokens.inc(caller.name, "completion", amount=completion)

    def _record(self, route: str, ex: Exchange, caller: Caller) -> None:
        elapsed = time.perf_counter() - ex.t0
        status = ex.status or 499  # 499: the client went away before an answer
        metrics = self.state.metrics
        code = str(status)
        metrics.requests.inc(ex.alias, ex.backend, ex.engine, code)
        metrics.key_requests.inc(caller.name, ex.alias, code)
        metrics.latency.observe(elapsed, ex.alias, ex.backend, ex.engine)
        metrics.overhead.observe(max(0.0, elapsed - ex.waited), ex.alias, ex.backend, ex.engine)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("%s key=%s alias=%s backend=%s engine=%s status=%d ms=%.1f retries=%d%s%s", route,
                            caller.name, ex.alias, ex.backend, ex.engine, status, elapsed * 1000.0, ex.retries,
                            f" fallback_from={ex.fallback_from}" if ex.fallback_from else "",
                            " stream=1" if ex.stream else "")
        telemetry = self.telemetry
        if telemetry.enabled:
            telemetry.record(route, ex.t0, {"vilms.key": caller.name, "vilms.alias": ex.alias, "vilms.backend": ex.backend,
                                            "vilms.engine": ex.engine,
                                            "http.response.status_code": status, "vilms.retries": ex.retries})

    async def models(self, request: Request) -> Response:
        table = self.state.table
        try:
            caller = table.keys.check(request.headers.get("authorization"))
        except KeyRejected as err:
            self.state.metrics.key_rejections.inc(ANONYMOUS.name, err.reason)
            return err.response()
        return Response(table.seen_by(caller).models_body)  # a scoped key sees its aliases only

    async def model(self, request: Request) -> Response:
        table = self.state.table
        name = request.match
        caller = ANONYMOUS
        try:
            caller = table.keys.check(request.headers.get("authorization"))
            caller.check_model(name)
            table = table.seen_by(caller)
            if name not in table.aliases:
                raise ApiError(404, f"The model '{name}' does not exist.", param="model", code="model_not_found")
        except ApiError as err:
            if isinstance(err, KeyRejected):
                self.state.metrics.key_rejections.inc(caller.name, err.reason)
            return err.response()
        entry = next(m for m in json.loads(table.models_body)["data"] if m["id"] == name)
        return json_response(entry)

    async def readyz(self, request: Request) -> Response:
        state = self.state
        status, body = readiness(state.table, state.draining, request.headers.get("authorization"))
        return json_response(body, status=status)

    async def metrics(self, request: Request) -> Response:
        try:
            self.state.table.ops.check(request.headers.get("authorization"))
        except ApiError as err:
            return err.response()
        return Response(self.state.metrics.render().encode(), content_type="text/plain; version=0.0.4; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


def _error_response(status: int, message: str, code: str) -> Response:
    return ApiError(status, message, code=code).response()
