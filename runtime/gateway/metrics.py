"""The gateway's metrics: plain dicts updated per request, read by ``/metrics`` and the OTLP export.

Every instrument comes from the one table, :data:`vilms.compiler.facts.telemetry.GATEWAY`
(OpenTelemetry name, kind, unit, attributes); the Prometheus names and labels of ``/metrics``
are derived from it (:func:`~vilms.compiler.facts.telemetry.prometheus_name`), and
:mod:`.metrics_export` sends the same series over OTLP.

Counters and histograms are dicts keyed by attribute-value tuples (in the table's attribute
order); an update is a dict lookup and an addition, so metrics cost next to nothing per
request, and no OpenTelemetry code runs on a request's path. An attribute whose value is
``""`` is absent (OTLP leaves it out; Prometheus treats an empty label as no label).

Every series of a backend carries its ``engine`` (ollama, vllm, llamacpp, ray; "-" when no
backend was chosen). A ``vilms.gateway.*`` series of a Ray backend is also reported under
``llm.ray.*`` (:func:`~vilms.compiler.facts.telemetry.ray_name`), derived when read
(:meth:`GatewayMetrics.families`), never on the request path.
"""

from __future__ import annotations

import dataclasses
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable

from vilms.compiler.facts import ray as ray_facts
from vilms.compiler.facts import telemetry as facts

from .balancer import Endpoint

Key = tuple[str, ...]
Reader = Callable[[], Iterable[tuple[Key, float]]]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)
BUCKETS = {  # histogram bucket upper bounds, by instrument (GenAI: the conventions' recommended ones)
    "gen_ai.client.operation.duration": facts.DURATION_BUCKETS,
    "gen_ai.client.operation.time_to_first_chunk": facts.DURATION_BUCKETS,
    "gen_ai.client.token.usage": facts.TOKEN_BUCKETS,
    "vilms.gateway.request.duration": LATENCY_BUCKETS,
    "vilms.gateway.overhead": OVERHEAD_BUCKETS,
}
RESPONSE_MODEL_CHARS = 128  # gen_ai.response.model is cut to this length
RESPONSE_MODELS_PER_BACKEND = 16  # distinct response models kept per backend; later ones are reported as asked


class Counter:
    __slots__ = ("name", "help", "labels", "values", "instrument")

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        self.name, self.help, self.labels = name, help, labels
        self.values: dict[Key, float] = {}
        self.instrument: facts.Instrument | None = None

    @classmethod
    def of(cls, instrument: facts.Instrument) -> "Counter":
        metric = cls(facts.prometheus_name(instrument), instrument.description, _labels_of(instrument))
        metric.instrument = instrument
        return metric

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        self.values[label_values] = self.values.get(label_values, 0.0) + amount

    def items(self) -> list[tuple[Key, float]]:
        return list(self.values.items())

    def render(self, items: Iterable[tuple[Key, float]] | None = None, name: str | None = None) -> Iterable[str]:
        name = name or self.name
        yield f"# HELP {name} {self.help}"
        yield f"# TYPE {name} counter"
        for key, value in sorted(self.values.items() if items is None else items):
            yield f"{name}{_labels(self.labels, key)} {_num(value)}"


class Histogram:
    __slots__ = ("name", "help", "labels", "buckets", "series", "instrument")

    def __init__(self, name: str, help: str, labels: tuple[str, ...], buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.labels, self.buckets = name, help, labels, buckets
        self.series: dict[Key, list[float]] = {}  # per-bucket counts (value <= bound) + [sum, count]
        self.instrument: facts.Instrument | None = None

    @classmethod
    def of(cls, instrument: facts.Instrument) -> "Histogram":
        metric = cls(facts.prometheus_name(instrument), instrument.description, _labels_of(instrument),
                     BUCKETS[instrument.name])
        metric.instrument = instrument
        return metric

    def observe(self, value: float, *label_values: str) -> None:
        self.add(label_values, value)

    def add(self, key: Key, value: float) -> None:
        """:meth:`observe` with the attribute values already in a tuple (the per-attempt path)."""
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0] * (len(self.buckets) + 2)
        index = bisect_left(self.buckets, value)
        if index < len(self.buckets):
            row[index] += 1
        row[-2] += value
        row[-1] += 1

    def items(self) -> list[tuple[Key, list[float]]]:
        """A copy of every series (taken on the event loop: consistent rows)."""
        return [(key, row[:]) for key, row in self.series.items()]

    def render(self, items: Iterable[tuple[Key, list[float]]] | None = None, name: str | None = None) -> Iterable[str]:
        name = name or self.name
        yield f"# HELP {name} {self.help}"
        yield f"# TYPE {name} histogram"
        for key, row in sorted(self.series.items() if items is None else items):
            cumulative = 0.0
            for bound, count in zip(self.buckets, row, strict=False):
                cumulative += count
                yield f"{name}_bucket{_labels(self.labels + ('le',), key + (_num(bound),))} {_num(cumulative)}"
            yield f"{name}_bucket{_labels(self.labels + ('le',), key + ('+Inf',))} {_num(row[-1])}"
            yield f"{name}_sum{_labels(self.labels, key)} {repr(row[-2])}"
            yield f"{name}_count{_labels(self.labels, key)} {_num(row[-1])}"


class Gauge:
    __slots__ = ("name", "help", "labels", "read", "instrument")

    def __init__(self, name: str, help: str, labels: tuple[str, ...], read: Reader) -> None:
        self.name, self.help, self.labels, self.read = name, help, labels, read
        self.instrument: facts.Instrument | None = None

    @classmethod
    def of(cls, instrument: facts.Instrument, read: Reader) -> "Gauge":
        metric = cls(facts.prometheus_name(instrument), instrument.description, _labels_of(instrument), read)
        metric.instrument = instrument
        return metric

    def items(self) -> list[tuple[Key, float]]:
        return list(self.read())

    def render(self, items: Iterable[tuple[Key, float]] | None = None, name: str | None = None) -> Iterable[str]:
        name = name or self.name
        yield f"# HELP {name} {self.help}"
        yield f"# TYPE {name} gauge"
        for key, value in sorted(self.read() if items is None else items):
            yield f"{name}{_labels(self.labels, key)} {_num(value)}"


Metric = Counter | Histogram | Gauge


class GatewayMetrics:
    """Every series the gateway exports: one metric per instrument of ``facts.GATEWAY``."""

    def __init__(self, in_flight: Reader, endpoints: Callable[[], Iterable[Endpoint]],
                 backend_endpoints: Reader = list, adapter_endpoints: Reader = list) -> None:
        self.started_ns = time.time_ns()  # start of every cumulative series
        readers: dict[str, Reader] = {
            "vilms.gateway.in_flight": in_flight,
            "vilms.gateway.backend.endpoints": backend_endpoints,
            "vilms.gateway.adapter.endpoints": adapter_endpoints,
            "vilms.gateway.endpoint.in_flight": lambda: [((e.label,), float(e.inflight)) for e in endpoints()],
            "vilms.gateway.endpoint.up": lambda: _up(endpoints()),
            "vilms.gateway.endpoint.consecutive_failures": lambda: [((e.label,), float(e.failures)) for e in endpoints()],
        }
        self.all: tuple[Metric, ...] = tuple(_make(i, readers) for i in facts.GATEWAY)
        by = {m.instrument.name: m for m in self.all if m.instrument is not None}
        # GenAI semantic conventions: one operation per upstream attempt
        self.operation_duration: Histogram = by["gen_ai.client.operation.duration"]  # type: ignore[assignment]
        self.token_usage: Histogram = by["gen_ai.client.token.usage"]  # type: ignore[assignment]
        self.time_to_first_chunk: Histogram = by["gen_ai.client.operation.time_to_first_chunk"]  # type: ignore[assignment]
        # ViLMS's own
        self.requests: Counter = by["vilms.gateway.requests"]  # type: ignore[assignment]
        self.latency: Histogram = by["vilms.gateway.request.duration"]  # type: ignore[assignment]
        self.overhead: Histogram = by["vilms.gateway.overhead"]  # type: ignore[assignment]
        self.upstream_errors: Counter = by["vilms.gateway.upstream.errors"]  # type: ignore[assignment]
        self.retries: Counter = by["vilms.gateway.retries"]  # type: ignore[assignment]
        self.rotations: Counter = by["vilms.gateway.endpoint.rotations"]  # type: ignore[assignment]
        self.ejections: Counter = by["vilms.gateway.endpoint.ejections"]  # type: ignore[assignment]
        self.fallbacks: Counter = by["vilms.gateway.fallbacks"]  # type: ignore[assignment]
        self.queue_rejections: Counter = by["vilms.gateway.queue.rejections"]  # type: ignore[assignment]
        self.trimmed: Counter = by["vilms.gateway.trimmed"]  # type: ignore[assignment]
        self.reloads: Counter = by["vilms.gateway.reloads"]  # type: ignore[assignment]
        # API keys appear by name ("-": none or not valid, "_api_keys": gateway.api_keys), never by value.
        self.key_requests: Counter = by["vilms.gateway.key.requests"]  # type: ignore[assignment]
        self.key_rejections: Counter = by["vilms.gateway.key.rejections"]  # type: ignore[assignment]
        self.key_tokens: Counter = by["vilms.gateway.key.tokens"]  # type: ignore[assignment]
        self.write_timeouts: Counter = by["vilms.gateway.client.write_timeouts"]  # type: ignore[assignment]
        self.discovery_lookups: Counter = by["vilms.gateway.discovery.lookups"]  # type: ignore[assignment]
        self.adapter_ops: Counter = by["vilms.gateway.adapter.operations"]  # type: ignore[assignment]
        self._response_models: dict[str, set[str]] = {}

    def response_model(self, backend: str, answered: object, asked: str) -> str:
        """The ``gen_ai.response.model`` value: the engine's ``model`` (printable, at most
        :data:`RESPONSE_MODEL_CHARS`), ``asked`` when the engine named none; a backend keeps at
        most :data:`RESPONSE_MODELS_PER_BACKEND` distinct values (then ``asked``), so an engine
        cannot grow the series without bound."""
        if type(answered) is not str or not answered or answered == asked:
            return asked
        value = answered[:RESPONSE_MODEL_CHARS]
        if not value.isprintable():
            return asked
        seen = self._response_models.setdefault(backend, set())
        if value in seen:
            return value
        if len(seen) >= RESPONSE_MODELS_PER_BACKEND:
            return asked
        seen.add(value)
        return value

    def forget_endpoints(self, live: Iterable[Endpoint]) -> None:
        """Drop the per-endpoint series (GenAI ``server.address``/``server.port``, ejections) of
        endpoints that left (pods found by DNS come and go): series stay bounded by the endpoints
        the backends have now, not by every address seen since start."""
        live = list(live)
        addresses = {(e.address, e.port) for e in live}
        labels = {e.label for e in live}
        for histogram in (self.operation_duration, self.token_usage, self.time_to_first_chunk):
            names = histogram.instrument.attributes  # type: ignore[union-attr]
            a, p = names.index("server.address"), names.index("server.port")
            for key in [k for k in histogram.series if (k[a], k[p]) not in addresses]:
                del histogram.series[key]
        at = self.ejections.instrument.attributes.index("endpoint")  # type: ignore[union-attr]
        for key in [k for k in self.ejections.values if k[at] not in labels]:
            del self.ejections.values[key]

    def families(self) -> list[tuple[facts.Instrument, Metric, list[tuple[Key, object]]]]:
        """Every instrument with a copy of its series, in the table's order, each followed by its
        ``llm.ray.*`` twin when a Ray backend has series in it. Read on the event loop."""
        out: list[tuple[facts.Instrument, Metric, list[tuple[Key, object]]]] = []
        for metric in self.all:
            instrument = metric.instrument
            assert instrument is not None
            items: list[tuple[Key, object]] = metric.items()  # type: ignore[assignment]
            out.append((instrument, metric, items))
            twin = _ray_twin(instrument)
            if twin is not None:
                at = instrument.attributes.index("engine")
                ray_items = [(k, v) for k, v in items if k[at] == ray_facts.ENGINE]
                if ray_items:
                    out.append((twin, metric, ray_items))
        return out

    def render(self) -> str:
        lines: list[str] = []
        for instrument, metric, items in self.families():
            name = metric.name if instrument is metric.instrument else facts.prometheus_name(instrument)
            lines.extend(metric.render(items, name))  # type: ignore[arg-type]
        return "\n".join(lines) + "\n"


_TWINS: dict[str, facts.Instrument | None] = {}


def _ray_twin(instrument: facts.Instrument) -> facts.Instrument | None:
    """The ``llm.ray.*`` instrument of a ``vilms.gateway.*`` one with an ``engine`` attribute."""
    if instrument.name not in _TWINS:
        name = facts.ray_name(instrument)
        _TWINS[instrument.name] = dataclasses.replace(instrument, name=name) \
            if name is not None and "engine" in instrument.attributes else None
    return _TWINS[instrument.name]


def _make(instrument: facts.Instrument, readers: dict[str, Reader]) -> Metric:
    if instrument.kind == "counter":
        return Counter.of(instrument)
    if instrument.kind == "histogram":
        return Histogram.of(instrument)
    return Gauge.of(instrument, readers[instrument.name])


def _labels_of(instrument: facts.Instrument) -> tuple[str, ...]:
    return tuple(facts.prometheus_label(a) for a in instrument.attributes)


def _up(endpoints: Iterable[Endpoint]) -> list[tuple[Key, float]]:
    now = time.monotonic()
    return [((e.label,), 0.0 if e.cooling(now) else 1.0) for e in endpoints]


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    pairs = [(n, v) for n, v in zip(names, values, strict=False) if v != "" or n == "le"]
    if not pairs:
        return ""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in pairs) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
