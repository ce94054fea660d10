"""Where OpenTelemetry data goes (``telemetry.otlp`` in vilms.yaml): part of the gateway's
routes and of every training config, and the same in both."""

from __future__ import annotations

from collections.abc import Mapping

from vilms.compiler.facts import telemetry as facts
from vilms.compiler.record import record


@record
class OtlpSpec:
    """An OTLP/HTTP (protobuf) receiver. Secrets (header values, an endpoint given as
    ``env:``) are environment variables read at run time, never values."""

    endpoint: str | None  # the base URL; null: read it from endpoint_env at run time
    endpoint_env: str | None
    headers_env: Mapping[str, str]  # header name → environment variable holding its value
    interval_s: float  # between metric exports
    metrics: bool
    traces: bool

    @property
    def env_names(self) -> tuple[str, ...]:
        """Every environment variable the exporter reads, sorted."""
        return tuple(sorted({*([self.endpoint_env] if self.endpoint_env else []), *self.headers_env.values()}))

    def base_url(self, environ: Mapping[str, str]) -> str | None:
        """The endpoint, from the file or the environment; None when its variable is unset or empty."""
        base = self.endpoint if self.endpoint is not None else environ.get(self.endpoint_env or "", "").strip()
        return base.rstrip("/") or None

    def metrics_url(self, environ: Mapping[str, str]) -> str | None:
        base = self.base_url(environ)
        return None if base is None else base + facts.OTLP_METRICS_PATH

    def traces_url(self, environ: Mapping[str, str]) -> str | None:
        base = self.base_url(environ)
        return None if base is None else base + facts.OTLP_TRACES_PATH

    def headers(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Header values from the environment; a header whose variable is unset is left out."""
        return {name: environ[env] for name, env in sorted(self.headers_env.items()) if environ.get(env)}

