"""An OTLP/HTTP receiver on 127.0.0.1 that decodes what it gets (the protobuf
ExportMetricsServiceRequest) into plain points: (name, unit, attributes, value)."""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Point:
    name: str
    unit: str
    attributes: dict[str, Any]
    value: float
    resource: dict[str, Any] = field(default_factory=dict)


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def points(self) -> list[Point]:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        out = []
        for path, _, body in list(self.requests):
            if path != "/v1/metrics":
                continue
            request = ExportMetricsServiceRequest.FromString(body)
            for rm in request.resource_metrics:
                resource = {a.key: _value(a.value) for a in rm.resource.attributes}
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        data = metric.gauge if metric.HasField("gauge") else metric.sum if metric.HasField("sum") else None
                        if data is None:
                            continue
                        for dp in data.data_points:
                            value = dp.as_double if dp.HasField("as_double") else float(dp.as_int)
                            out.append(Point(metric.name, metric.unit, {a.key: _value(a.value) for a in dp.attributes},
                                             value, resource))
        return out


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value"))


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server hook
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass
