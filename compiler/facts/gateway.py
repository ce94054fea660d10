"""The ViLMS gateway (runtime/gateway/): its default port, its probes and its container paths."""

from __future__ import annotations

# the gateway's default port: gateway.port in vilms.yaml, and where it listens inside its container
PORT = 8080
READY_PATH = "/readyz"  # 200 while routes are loaded and the gateway is not draining (runtime/gateway/ops.py)
LIVE_PATH = "/healthz"  # 200 while the process serves (runtime/gateway/app.py)
CONFIG_DIR = "/etc/vilms"  # folder of the routes table inside the container
ROUTES_NAME = "routes.yaml"  # the routes table's file name (a ConfigMap key under Helm)
ROUTES_FILE = f"{CONFIG_DIR}/{ROUTES_NAME}"  # what `--routes` reads inside the container
METRICS_PATH = "/metrics"  # Prometheus text format; with an ops key it needs `Authorization: Bearer <ops key>`

# series of runtime/gateway/metrics.py that the Helm chart's HPA and dashboard read
METRIC_REQUESTS = "vilms_gateway_requests_total"  # counter {alias, backend, status}
METRIC_DURATION = "vilms_gateway_request_duration_seconds"  # histogram {alias, backend}
METRIC_UPSTREAM_ERRORS = "vilms_gateway_upstream_errors_total"  # counter {alias, backend, kind}
METRIC_IN_FLIGHT = "vilms_gateway_in_flight"  # gauge: requests in flight in one gateway process
