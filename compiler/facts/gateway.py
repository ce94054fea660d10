"""The ViLMS gateway (runtime/gateway/): its default port, its probes and its container paths."""

from __future__ import annotations

# the gateway's default port: gateway.port in vilms.yaml, and where it listens inside its container
PORT = 8080
READY_PATH = "/readyz"  # 200 while routes are loaded and the gateway is not draining (runtime/gateway/ops.py)
LIVE_PATH = "/healthz"  # 200 while the process serves (runtime/gateway/app.py)
CONFIG_DIR = "/etc/vilms"  # folder of the routes table inside the container
ROUTES_NAME = "routes.yaml"  # the routes table's file name (a ConfigMap key under Helm)
ROUTES_FILE = f"{CONFIG_DIR}/{ROUTES_NAME}"  # what `--routes` reads inside the container
