"""Every metric ViLMS emits: its OpenTelemetry name, kind, unit and attributes, in one place.

The gateway exports these over OTLP and on ``/metrics``; the trainer sends its own over
OTLP and to MLflow. Prometheus names are derived, never written by hand
(:func:`prometheus_name`, the OpenTelemetry → Prometheus compatibility rules: ``.`` → ``_``,
the unit as a suffix, ``_total`` on counters), so ``/metrics``, the OTLP stream, the
dashboards and docs/observability.md all speak of the same instruments.

GenAI instruments follow OpenTelemetry's GenAI semantic conventions (client metrics,
semantic-conventions v1.41): the gateway is the GenAI client of its engines, and records one
operation per upstream attempt. ViLMS's own instruments live under ``vilms.``; a series of a
Ray backend (``engine`` = ``ray``) is also reported under :data:`RAY_PREFIX`.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- OTLP/HTTP export (telemetry.otlp in vilms.yaml)
OTLP_METRICS_PATH = "/v1/metrics"  # appended to telemetry.otlp.endpoint, a base URL
OTLP_TRACES_PATH = "/v1/traces"
EXPORT_INTERVAL_S = 15.0  # default telemetry.otlp.interval: seconds between metric exports
EXPORT_TIMEOUT_S = 10.0  # one export request; a collector that hangs costs no more
GATEWAY_SERVICE = "vilms-gateway"  # resource service.name
TRAINER_SERVICE = "vilms-trainer"
METER = "vilms"  # instrumentation scope name

RAY_PREFIX = "llm.ray."  # vilms.gateway.<x> of a Ray backend is also reported as llm.ray.<x>
GATEWAY_PREFIX = "vilms.gateway."

# --- MLflow (adapters.<a>.tracking.mlflow)
MLFLOW_LOCAL_URI = "file:mlruns"  # `mlflow: true`: a store in the project, beside vilms.yaml
MLFLOW_REGISTRY_ALIAS = "production"  # default alias `vilms rollout` moves to the released version
MLFLOW_REQUEST_TIMEOUT_S = 10  # one HTTP request to a tracking server (trainer and registry alike)
MLFLOW_RUN_TAG = "vilms.run_id"  # tag that finds a ViLMS run's MLflow run (resume, rollout)

# GenAI semantic conventions' recommended bucket boundaries
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

# OpenTelemetry → Prometheus unit suffixes, as prometheus/otlptranslator (the Collector's Prometheus exporter,
# Prometheus's own OTLP receiver) writes them: a gauge of unit "1" gets _ratio, "X/s" gets _per_second, {annotations}
# add nothing. Units here are chosen so that trainer series read well after that translation.
_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "%": "percent"}
_PER_SUFFIX = {"s": "second", "m": "minute", "h": "hour"}


@dataclass(frozen=True)
class Instrument:
    name: str  # OpenTelemetry name
    kind: str  # counter | histogram | gauge
    unit: str  # UCUM; {curly} units are annotations and give no Prometheus suffix
    description: str
    attributes: tuple[str, ...]
    mlflow_key: str | None = None  # the trainer's metrics: the key it is logged under in MLflow


def prometheus_name(instrument: Instrument) -> str:
    """``gen_ai.client.operation.duration`` (s) → ``gen_ai_client_operation_duration_seconds``;
    ``vilms.train.throughput`` ({token}/s) → ``vilms_train_throughput_per_second``."""
    name = instrument.name.replace(".", "_")
    main, _, per = instrument.unit.partition("/")
    if main == "1" and instrument.kind == "gauge" and not per:
        suffix = "ratio"
    else:
        suffix = "" if main.startswith("{") else _UNIT_SUFFIX.get(main, "")
    if suffix and not name.endswith("_" + suffix):
        name += "_" + suffix
    per_suffix = "" if not per or per.startswith("{") else "per_" + _PER_SUFFIX.get(per, per)
    if per_suffix and not name.endswith("_" + per_suffix):
        name += "_" + per_suffix
    if instrument.kind == "counter":
        name += "_total"
    return name


def prometheus_label(attribute: str) -> str:
    """``gen_ai.request.model`` → ``gen_ai_request_model``."""
    return attribute.replace(".", "_")


def ray_name(instrument: Instrument) -> str | None:
    """``vilms.gateway.retries`` → ``llm.ray.retries``; None for an instrument not under vilms.gateway."""
    if not instrument.name.startswith(GATEWAY_PREFIX):
        return None
    return RAY_PREFIX + instrument.name[len(GATEWAY_PREFIX):]


# Attributes of an upstream attempt under the GenAI conventions (gen_ai.provider.name is required there:
# no well-known value names a self-hosted engine, so it is the engine, as the conventions allow)
_GENAI = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
          "server.address", "server.port", "backend", "engine")
_ROUTE = ("alias", "backend", "engine")

GATEWAY: tuple[Instrument, ...] = (
    # GenAI semantic conventions
    Instrument("gen_ai.client.operation.duration", "histogram", "s",
               "One upstream attempt, from sending the request to the engine's last byte.", _GENAI + ("error.type",)),
    Instrument("gen_ai.client.token.usage", "histogram", "{token}",
               "Tokens of one answered attempt, by gen_ai.token.type (input, output), from the engine's usage.",
               _GENAI + ("gen_ai.token.type",)),
    Instrument("gen_ai.client.operation.time_to_first_chunk", "histogram", "s",
               "Streaming attempts: from sending the request to the engine's first chunk.", _GENAI),
    # ViLMS's own
    Instrument("vilms.gateway.requests", "counter", "{request}", "Requests answered, by alias, backend and HTTP status.",
               _ROUTE + ("status",)),
    Instrument("vilms.gateway.request.duration", "histogram", "s", "Time from request received to response finished.", _ROUTE),
    Instrument("vilms.gateway.overhead", "histogram", "s",
               "Time the gateway itself spent on a request (excludes upstream wait).", _ROUTE),
    Instrument("vilms.gateway.upstream.errors", "counter", "{error}",
               "Failed upstream attempts, by kind (connect, timeout, first_byte_timeout, status_5xx, ...).", _ROUTE + ("kind",)),
    Instrument("vilms.gateway.retries", "counter", "{retry}", "Upstream attempts beyond the first.", _ROUTE),
    Instrument("vilms.gateway.endpoint.rotations", "counter", "{rotation}",
               "Retries sent to a different endpoint of the same backend than the attempt that failed.", _ROUTE),
    Instrument("vilms.gateway.endpoint.ejections", "counter", "{ejection}",
               "Endpoints taken out of rotation to cool down after eject_after failures in a row.",
               ("backend", "engine", "endpoint")),
    Instrument("vilms.gateway.fallbacks", "counter", "{request}", "Requests answered by a fallback alias.",
               ("alias", "fallback")),
    Instrument("vilms.gateway.queue.rejections", "counter", "{request}",
               "Requests refused because max_queue requests were already waiting.", _ROUTE),
    Instrument("vilms.gateway.trimmed", "counter", "{request}", "Requests changed to fit the hardware profile.",
               ("alias", "what")),
    Instrument("vilms.gateway.reloads", "counter", "{reload}", "Routing-table reloads, by result.", ("result",)),
    Instrument("vilms.gateway.key.requests", "counter", "{request}",
               "Inference requests by API key name, alias and HTTP status.", ("key", "alias", "status")),
    Instrument("vilms.gateway.key.rejections", "counter", "{request}",
               "Requests refused because of their key, by reason (missing_key, invalid_key, model_not_allowed, rpm, tpm).",
               ("key", "reason")),
    Instrument("vilms.gateway.key.tokens", "counter", "{token}",
               "Tokens charged to each key from the engines' usage, by kind (prompt, completion).", ("key", "kind")),
    Instrument("vilms.gateway.client.write_timeouts", "counter", "{stream}",
               "Streams given up because the client read nothing for write_timeout_s.", _ROUTE),
    Instrument("vilms.gateway.discovery.lookups", "counter", "{lookup}",
               "DNS lookups of a backend's discovery name, by result (ok, error).", ("backend", "engine", "result")),
    Instrument("vilms.gateway.adapter.operations", "counter", "{operation}",
               "Runtime adapter loads and unloads on engines, by result (ok, error).", ("backend", "engine", "op", "result")),
    Instrument("vilms.gateway.in_flight", "gauge", "{request}", "Requests currently in flight.", ()),
    Instrument("vilms.gateway.backend.endpoints", "gauge", "{endpoint}", "Endpoints of each backend (static, or found by DNS).",
               ("backend", "engine")),
    Instrument("vilms.gateway.adapter.endpoints", "gauge", "{endpoint}", "Endpoints that confirmed holding each runtime adapter.",
               ("backend", "engine", "adapter")),
    Instrument("vilms.gateway.endpoint.in_flight", "gauge", "{request}", "Upstream requests in flight per endpoint.", ("endpoint",)),
    Instrument("vilms.gateway.endpoint.up", "gauge", "{endpoint}",
               "1 while an endpoint takes traffic, 0 while it is ejected (cooling down).", ("endpoint",)),
    Instrument("vilms.gateway.endpoint.consecutive_failures", "gauge", "{failure}",
               "Failed attempts in a row per endpoint (ejected at eject_after).", ("endpoint",)),
)

_RUN = ("adapter", "run_id", "base_model")

TRAINER: tuple[Instrument, ...] = (
    Instrument("vilms.train.loss", "gauge", "{nat}", "Training loss of the last optimizer step.", _RUN, "train_loss"),
    Instrument("vilms.train.learning_rate", "gauge", "{lr}", "Learning rate of the last optimizer step.", _RUN, "learning_rate"),
    Instrument("vilms.train.grad_norm", "gauge", "{norm}", "Gradient norm before clipping, last optimizer step.", _RUN, "grad_norm"),
    Instrument("vilms.train.throughput", "gauge", "{token}/s", "Training tokens per second over the last step.", _RUN,
               "tokens_per_second"),
    Instrument("vilms.train.steps", "counter", "{step}", "Optimizer steps taken.", _RUN),
    Instrument("vilms.train.peak_rss", "gauge", "By", "Peak resident memory of the trainer process so far.", _RUN,
               "peak_rss_bytes"),
    Instrument("vilms.train.gpu.peak_memory", "gauge", "By", "Peak CUDA memory allocated so far (GPU runs only).", _RUN,
               "gpu_peak_memory_bytes"),
    Instrument("vilms.train.eval.loss", "gauge", "{nat}", "Mean held-out token loss at the last evaluation.", _RUN, "eval_loss"),
    Instrument("vilms.train.eval.perplexity", "gauge", "{perplexity}", "exp(eval loss) at the last evaluation.", _RUN, "eval_perplexity"),
    Instrument("vilms.train.gate", "gauge", "{verdict}", "The gate's verdict: 1 passed or approved, 0 otherwise, by status.",
               _RUN + ("status",), "gate_passed"),
)


def by_name(instruments: tuple[Instrument, ...]) -> dict[str, Instrument]:
    return {i.name: i for i in instruments}
