"""Optional OpenTelemetry trace export (one span per request), enabled only when configured.

``telemetry`` in the routes (``telemetry.otlp`` in vilms.yaml) gives an OTLP/HTTP base URL
(or the variable holding it) and headers; spans go to ``<base>/v1/traces``. The
OpenTelemetry SDK is imported lazily; when it is not installed the gateway logs that once
and runs without export.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from vilms.compiler.contracts.telemetry import OtlpSpec
from vilms.compiler.facts import telemetry as facts

log = logging.getLogger("vilms.gateway")


class Telemetry:
    def __init__(self, tracer: Any = None, provider: Any = None) -> None:
        self._tracer = tracer
        self._provider = provider

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @classmethod
    def from_settings(cls, spec: OtlpSpec | None, environ: Mapping[str, str] | None = None) -> "Telemetry":
        if spec is None or not spec.traces:
            return cls()
        environ = os.environ if environ is None else environ
        endpoint = spec.traces_url(environ)
        if endpoint is None:
            log.warning("telemetry.otlp.endpoint names %s, which is unset or empty: no trace export", spec.endpoint_env)
            return cls()
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning("OpenTelemetry export is configured but opentelemetry-sdk and "
                        "opentelemetry-exporter-otlp-proto-http are not installed: no trace export")
            return cls()
        provider = TracerProvider(resource=Resource.create({"service.name": facts.GATEWAY_SERVICE}))
        exporter = OTLPSpanExporter(endpoint=endpoint, headers=spec.headers(environ), timeout=facts.EXPORT_TIMEOUT_S)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider.get_tracer("vilms.gateway"), provider)

    def record(self, route: str, start_perf: float, attributes: Mapping[str, Any]) -> None:
        """Emit one finished span for a request that started at ``start_perf`` (perf_counter)."""
        if self._tracer is None:
            return
        end_ns = time.time_ns()
        start_ns = end_ns - int((time.perf_counter() - start_perf) * 1e9)
        span = self._tracer.start_span(f"POST {route}", start_time=start_ns, attributes=dict(attributes))
        span.end(end_time=end_ns)

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
