"""Prometheus metrics, written in the text exposition format by hand (no dependency).

Counters and histograms are plain dicts keyed by label tuples; an update is a dict
lookup and an addition, so metrics cost next to nothing per request. Every series of a
backend carries its ``engine`` (ollama, vllm, llamacpp, ray; "-" when no backend was
chosen), so that backends of different engines can be told apart.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable

from .balancer import Endpoint

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Counter:
    __slots__ = ("name", "help", "labels", "values")

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        self.name, self.help, self.labels = name, help, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        self.values[label_values] = self.values.get(label_values, 0.0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for key in sorted(self.values):
            yield f"{self.name}{_labels(self.labels, key)} {_num(self.values[key])}"


class Histogram:
    __slots__ = ("name", "help", "labels", "buckets", "series")

    def __init__(self, name: str, help: str, labels: tuple[str, ...], buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.labels, self.buckets = name, help, labels, buckets
        self.series: dict[tuple[str, ...], list[float]] = {}  # per-bucket counts + [sum, count]

    def observe(self, value: float, *label_values: str) -> None:
        row = self.series.get(label_values)
        if row is None:
            row = self.series[label_values] = [0.0] * (len(self.buckets) + 2)
        index = bisect_left(self.buckets, value)
        if index < len(self.buckets):
            row[index] += 1
        row[-2] += value
        row[-1] += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for key in sorted(self.series):
            row = self.series[key]
            cumulative = 0.0
            for bound, count in zip(self.buckets, row, strict=False):
                cumulative += count
                yield f"{self.name}_bucket{_labels(self.labels + ('le',), key + (_num(bound),))} {_num(cumulative)}"
            yield f"{self.name}_bucket{_labels(self.labels + ('le',), key + ('+Inf',))} {_num(row[-1])}"
            yield f"{self.name}_sum{_labels(self.labels, key)} {repr(row[-2])}"
            yield f"{self.name}_count{_labels(self.labels, key)} {_num(row[-1])}"


class Gauge:
    __slots__ = ("name", "help", "labels", "read")

    def __init__(self, name: str, help: str, labels: tuple[str, ...],
                 read: Callable[[], Iterable[tuple[tuple[str, ...], float]]]) -> None:
        self.name, self.help, self.labels, self.read = name, help, labels, read

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        for key, value in sorted(self.read()):
            yield f"{self.name}{_labels(self.labels, key)} {_num(value)}"


class GatewayMetrics:
    """Every series the gateway exports."""

    def __init__(self, in_flight: Callable[[], Iterable[tuple[tuple[str, ...], float]]],
                 endpoints: Callable[[], Iterable[Endpoint]],
                 backend_endpoints: Callable[[], Iterable[tuple[tuple[str, ...], float]]] = list,
                 adapter_endpoints: Callable[[], Iterable[tuple[tuple[str, ...], float]]] = list) -> None:
        self.requests = Counter("vilms_gateway_requests_total", "Requests answered, by alias, backend and HTTP status.",
                                ("alias", "backend", "engine", "status"))
        self.latency = Histogram("vilms_gateway_request_duration_seconds",
                                 "Time from request received to response finished.", ("alias", "backend", "engine"))
        self.overhead = Histogram("vilms_gateway_overhead_seconds",
                                  "Time the gateway itself spent on a request (excludes upstream wait).",
                                  ("alias", "backend", "engine"),
                                  buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05))
        self.upstream_errors = Counter("vilms_gateway_upstream_errors_total",
                                       "Failed upstream attempts, by kind (connect, timeout, status_5xx, ...).",
                                       ("alias", "backend", "engine", "kind"))
        self.retries = Counter("vilms_gateway_retries_total", "Upstream attempts beyond the first.",
                               ("alias", "backend", "engine"))
        self.fallbacks = Counter("vilms_gateway_fallbacks_total", "Requests answered by a fallback alias.",
                                 ("alias", "fallback"))
        self.trimmed = Counter("vilms_gateway_trimmed_total", "Requests changed to fit the hardware profile.",
                               ("alias", "what"))
        self.reloads = Counter("vilms_gateway_reloads_total", "Routing-table reloads, by result.", ("result",))
        # API keys appear by name ("-": none or not valid, "_api_keys": gateway.api_keys), never by value.
        self.key_requests = Counter("vilms_gateway_key_requests_total",
                                    "Inference requests by API key name, alias and HTTP status.", ("key", "alias", "status"))
        self.key_rejections = Counter("vilms_gateway_key_rejections_total",
                                      "Requests refused because of their key, by reason "
                                      "(missing_key, invalid_key, model_not_allowed, rpm, tpm).", ("key", "reason"))
        self.key_tokens = Counter("vilms_gateway_key_tokens_total",
                                  "Tokens charged to each key from the engines' usage, by kind (prompt, completion).",
                                  ("key", "kind"))
        self.write_timeouts = Counter("vilms_gateway_client_write_timeouts_total",
                                      "Streams given up because the client read nothing for write_timeout_s.",
                                      ("alias", "backend", "engine"))
        self.discovery_lookups = Counter("vilms_gateway_discovery_lookups_total",
                                         "DNS lookups of a backend's discovery name, by result (ok, error).",
                                         ("backend", "engine", "result"))
        self.adapter_ops = Counter("vilms_gateway_adapter_operations_total",
                                   "Runtime adapter loads and unloads on engines, by result (ok, error).",
                                   ("backend", "engine", "op", "result"))
        self._gauges = (
            Gauge("vilms_gateway_in_flight", "Requests currently in flight.", (), in_flight),
            Gauge("vilms_gateway_backend_endpoints", "Endpoints of each backend (static, or found by DNS).",
                  ("backend", "engine"), backend_endpoints),
            Gauge("vilms_gateway_adapter_endpoints", "Endpoints that confirmed holding each runtime adapter.",
                  ("backend", "engine", "adapter"), adapter_endpoints),
            Gauge("vilms_gateway_endpoint_in_flight", "Upstream requests in flight per endpoint.",
                  ("endpoint",), lambda: [((e.label,), float(e.inflight)) for e in endpoints()]),
            Gauge("vilms_gateway_endpoint_up", "1 while an endpoint takes traffic, 0 while it is ejected (cooling down).",
                  ("endpoint",), lambda: _up(endpoints())),
            Gauge("vilms_gateway_endpoint_consecutive_failures",
                  "Failed attempts in a row per endpoint (ejected at eject_after).",
                  ("endpoint",), lambda: [((e.label,), float(e.failures)) for e in endpoints()]),
        )

    def render(self) -> str:
        lines: list[str] = []
        for metric in (self.requests, self.latency, self.overhead, self.upstream_errors, self.retries,
                       self.fallbacks, self.trimmed, self.reloads, self.write_timeouts, self.key_requests,
                       self.key_rejections, self.key_tokens, self.discovery_lookups, self.adapter_ops, *self._gauges):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


def _up(endpoints: Iterable[Endpoint]) -> list[tuple[tuple[str, ...], float]]:
    now = time.monotonic()
    return [((e.label,), 0.0 if e.cooling(now) else 1.0) for e in endpoints]


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    body = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=False))
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
