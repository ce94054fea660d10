"""Periodic OTLP/HTTP export of the gateway's metrics (``telemetry.otlp`` with ``metrics: true``).

Every ``interval_s`` the event loop copies the metric dicts (:meth:`GatewayMetrics.families`,
a few dict copies) and a worker thread turns the copy into OpenTelemetry data points
(cumulative Sums, Histograms with explicit buckets, Gauges) and posts them with the SDK's
``OTLPMetricExporter`` (protobuf over HTTP, the configured headers, at most
``EXPORT_TIMEOUT_S`` per export). Requests never touch the SDK; an export that is still
running when the next one is due is skipped (cumulative series lose nothing), so a slow
collector costs one thread and one snapshot, never memory that grows. A failing collector
is logged once per outage (the kind of failure, never the URL or a header value) and once
when it recovers. On shutdown, after the drain, one final export.

Without the ``otel`` extra the gateway logs that once and runs without export.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from vilms.compiler.contracts.telemetry import OtlpSpec
from vilms.compiler.facts import telemetry as facts

from .metrics import GatewayMetrics, Histogram, Key

log = logging.getLogger("vilms.gateway")

# The SDK's exporter logs every failed export, with the endpoint in its errors; this module
# reports outages itself (once, without the URL), so the SDK's own log is kept quiet.
_SDK_LOGGERS = ("opentelemetry.exporter.otlp.proto.http.metric_exporter",
                "opentelemetry.exporter.otlp.proto.http._common", "opentelemetry.exporter.otlp.common.http")
_INT_ATTRIBUTES = frozenset(("server.port",))  # OTLP int attributes (a Prometheus label is text either way)


class MetricsExport:
    """Owns the exporter thread; :meth:`run` is the periodic task, :meth:`close` the final export."""

    def __init__(self, metrics: GatewayMetrics, exporter: Any, interval_s: float, sdk: Any) -> None:
        self.metrics = metrics
        self.exporter = exporter
        self.interval_s = interval_s
        self._sdk = sdk
        self._resource = sdk.Resource.create({"service.name": facts.GATEWAY_SERVICE})
        self._scope = sdk.InstrumentationScope(facts.METER)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vilms-otlp-metrics")
        self._busy: Future[bool] | None = None
        self.failing = False  # in an outage: logged once, until an export succeeds again
        self.exports = 0  # successful exports
        self.skipped = 0  # exports not started because the previous one was still running

    @classmethod
    def from_settings(cls, spec: OtlpSpec | None, metrics: GatewayMetrics,
                      environ: Mapping[str, str] | None = None) -> "MetricsExport | None":
        if spec is None or not spec.metrics:
            return None
        environ = os.environ if environ is None else environ
        url = spec.metrics_url(environ)
        if url is None:
            log.warning("telemetry.otlp.endpoint names %s, which is unset or empty: no metrics export",
                        spec.endpoint_env)
            return None
        try:
            sdk = _Sdk()
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        except ImportError:
            log.warning("OpenTelemetry metrics export is configured but opentelemetry-sdk and "
                        "opentelemetry-exporter-otlp-proto-http are not installed: no metrics export")
            return None
        for name in _SDK_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        exporter = OTLPMetricExporter(endpoint=url, headers=spec.headers(environ), timeout=facts.EXPORT_TIMEOUT_S)
        log.info("exporting metrics over OTLP every %g s", spec.interval_s)
        return cls(metrics, exporter, spec.interval_s, sdk)

    async def run(self) -> None:
        """Export every ``interval_s`` until cancelled."""
        logged = False
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.start_export()
            except Exception:  # a snapshot that failed must not end the exports for good
                if not logged:
                    log.exception("OTLP metrics export: taking the snapshot failed")
                    logged = True

    def start_export(self) -> Future[bool] | None:
        """Snapshot now (on the loop) and export in the worker thread; None when one is still running."""
        if self._busy is not None and not self._busy.done():
            self.skipped += 1
            if not self.failing:
                self.failing = True
                log.warning("OTLP metrics export failing: the collector has not answered the previous export "
                            "within %g s; skipping exports until it does, logging again once it recovers", self.interval_s)
            return None
        families = self.metrics.families()
        now = time.time_ns()
        self._busy = self._pool.submit(self._export, families, now)
        return self._busy

    async def close(self) -> None:
        """The final export (after the drain), bounded by ``EXPORT_TIMEOUT_S``; then stop the thread."""
        loop = asyncio.get_running_loop()
        try:
            if self._busy is not None and not self._busy.done():
                await asyncio.wait_for(asyncio.wrap_future(self._busy, loop=loop), facts.EXPORT_TIMEOUT_S)
            future = self.start_export()
            if future is not None:
                await asyncio.wait_for(asyncio.wrap_future(future, loop=loop), facts.EXPORT_TIMEOUT_S + 1.0)
        except (asyncio.TimeoutError, TimeoutError):
            log.warning("OTLP metrics export: the final export did not finish within %g s", facts.EXPORT_TIMEOUT_S)
        finally:
            self.exporter.shutdown()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _export(self, families: list[Any], now_ns: int) -> bool:
        try:
            data = self._data(families, now_ns)
            ok = self.exporter.export(data, timeout_millis=facts.EXPORT_TIMEOUT_S * 1000) == \
                self._sdk.MetricExportResult.SUCCESS
            problem = "the collector refused it or could not be reached"
        except Exception as exc:  # an export must never take the gateway down
            ok, problem = False, type(exc).__name__
        if ok:
            self.exports += 1
            if self.failing:
                self.failing = False
                log.warning("OTLP metrics export recovered: the collector accepts exports again")
        elif not self.failing:
            self.failing = True
            log.warning("OTLP metrics export failing: %s; retrying every %g s, logging again once it recovers",
                        problem, self.interval_s)
        return ok

    def _data(self, families: list[Any], now_ns: int) -> Any:
        sdk, start = self._sdk, self.metrics.started_ns
        metrics = []
        for instrument, metric, items in families:
            names = instrument.attributes
            if instrument.kind == "counter":
                points = [sdk.NumberDataPoint(_attributes(names, k), start, now_ns, v) for k, v in items]
                data: Any = sdk.Sum(points, sdk.CUMULATIVE, True)
            elif instrument.kind == "histogram":
                assert isinstance(metric, Histogram)
                points = [_histogram_point(sdk, names, metric.buckets, k, row, start, now_ns) for k, row in items]
                data = sdk.Histogram(points, sdk.CUMULATIVE)
            else:
                points = [sdk.NumberDataPoint(_attributes(names, k), start, now_ns, v) for k, v in items]
                data = sdk.Gauge(points)
            if points:
                metrics.append(sdk.Metric(instrument.name, instrument.description, instrument.unit, data))
        scope = sdk.ScopeMetrics(self._scope, metrics, None)
        return sdk.MetricsData([sdk.ResourceMetrics(self._resource, [scope], None)])


def _attributes(names: tuple[str, ...], key: Key) -> dict[str, str | int]:
    out: dict[str, str | int] = {}
    for name, value in zip(names, key, strict=False):
        if value == "":
            continue
        if name in _INT_ATTRIBUTES and value.isdigit():
            out[name] = int(value)
        else:
            out[name] = value
    return out


def _histogram_point(sdk: Any, names: tuple[str, ...], bounds: tuple[float, ...], key: Key, row: list[float],
                     start: int, now_ns: int) -> Any:
    counts = [int(c) for c in row[:len(bounds)]]
    total = int(row[-1])
    counts.append(max(0, total - sum(counts)))  # above the last bound
    return sdk.HistogramDataPoint(_attributes(names, key), start, now_ns, total, row[-2], counts, list(bounds),
                                  None, None)


class _Sdk:
    """The OpenTelemetry SDK classes, imported when export is configured (the ``otel`` extra)."""

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Gauge,
            Histogram,
            HistogramDataPoint,
            Metric,
            MetricExportResult,
            MetricsData,
            NumberDataPoint,
            ResourceMetrics,
            ScopeMetrics,
            Sum,
        )
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self.Gauge, self.Histogram, self.HistogramDataPoint, self.Metric = Gauge, Histogram, HistogramDataPoint, Metric
        self.MetricExportResult, self.MetricsData, self.NumberDataPoint = MetricExportResult, MetricsData, NumberDataPoint
        self.ResourceMetrics, self.ScopeMetrics, self.Sum = ResourceMetrics, ScopeMetrics, Sum
        self.Resource, self.InstrumentationScope = Resource, InstrumentationScope
        self.CUMULATIVE = AggregationTemporality.CUMULATIVE
