"""The trainer's metrics as OpenTelemetry metrics over OTLP/HTTP (``telemetry.otlp``).

The instruments are the trainer's rows of :mod:`vilms.compiler.facts.telemetry`; every point
carries ``adapter``, ``run_id`` and ``base_model``. The SDK's periodic reader exports from its
own thread every ``interval_s``; a collector that is down costs at most one export timeout per
interval, and :meth:`OtelMetrics.close` flushes within :data:`EXPORT_TIMEOUT_S`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vilms.compiler.contracts.telemetry import OtlpSpec
from vilms.compiler.errors import ActionError
from vilms.compiler.facts import telemetry as facts

STEPS = "vilms.train.steps"


def require(spec: OtlpSpec | None) -> None:
    if spec is None or not spec.metrics:
        return
    try:
        import opentelemetry.exporter.otlp.proto.http.metric_exporter  # noqa: F401
        import opentelemetry.sdk.metrics  # noqa: F401
    except ImportError:
        raise ActionError(
            "telemetry.otlp is set but the OpenTelemetry SDK is not installed",
            hint="pip install 'vilms[otel]', or set telemetry.otlp.metrics: false",
        ) from None


class OtelMetrics:
    def __init__(self, url: str, headers: Mapping[str, str], interval_s: float, attributes: Mapping[str, str]) -> None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        exporter = OTLPMetricExporter(endpoint=url, headers=dict(headers), timeout=facts.EXPORT_TIMEOUT_S)
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval_s * 1000,
                                               export_timeout_millis=facts.EXPORT_TIMEOUT_S * 1000)
        self._provider = MeterProvider(resource=Resource.create({"service.name": facts.TRAINER_SERVICE}),
                                       metric_readers=[reader])
        meter = self._provider.get_meter(facts.METER)
        self._attributes = dict(attributes)
        self._gauges: dict[str, Any] = {}
        self._steps: Any = None
        for instrument in facts.TRAINER:
            if instrument.kind == "counter":
                self._steps = meter.create_counter(instrument.name, unit=instrument.unit,
                                                   description=instrument.description)
            elif instrument.mlflow_key:
                self._gauges[instrument.mlflow_key] = meter.create_gauge(
                    instrument.name, unit=instrument.unit, description=instrument.description)
        self._last_step = 0

    @classmethod
    def from_spec(cls, spec: OtlpSpec | None, environ: Mapping[str, str], attributes: Mapping[str, str],
                  label: str) -> OtelMetrics | None:
        if spec is None or not spec.metrics:
            return None
        url = spec.metrics_url(environ)
        if url is None:
            import sys

            print(f"{label}: telemetry.otlp.endpoint is env:{spec.endpoint_env}, which is not set: no OTLP metrics",
                  file=sys.stderr)
            return None
        return cls(url, spec.headers(environ), spec.interval_s, attributes)

    def record(self, step: int, values: Mapping[str, float], extra: Mapping[str, str] | None = None) -> None:
        """Set the gauges named by their MLflow keys; count the steps taken since the last call."""
        attributes = {**self._attributes, **(extra or {})}
        for key, value in values.items():
            gauge = self._gauges.get(key)
            if gauge is not None:
                gauge.set(float(value), attributes)
        if step > self._last_step and self._steps is not None:
            self._steps.add(step - self._last_step, self._attributes)
            self._last_step = step

    def start_at(self, step: int) -> None:
        """A resumed run: steps before ``step`` were counted by the earlier session."""
        self._last_step = step

    def close(self) -> None:
        timeout_ms = int(facts.EXPORT_TIMEOUT_S * 1000)
        try:
            self._provider.force_flush(timeout_millis=timeout_ms)
        finally:
            self._provider.shutdown(timeout_millis=timeout_ms)
