"""An OTLP/HTTP metrics receiver on 127.0.0.1 for the tests: decodes the real protobuf payloads.

``Receiver(mode)``: ``ok`` answers 200; ``status:<code>`` answers that code; ``hang`` holds each
request until :meth:`release` (or its own 30 s bound). Each POST is kept as :class:`Received`
(path, headers, the decoded ``ExportMetricsServiceRequest``), gzip or deflate bodies included.
:func:`points` reads one metric of one export; :meth:`Receiver.samples` every gauge and sum point
received, flattened with its metric's name, unit and resource.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import zlib
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    request: ExportMetricsServiceRequest


@dataclass
class Point:
    """One data point, flattened: ``value`` for sums and gauges, ``count``/``sum``/``buckets`` for histograms."""

    kind: str
    attributes: dict[str, Any]
    value: float = 0.0
    count: int = 0
    sum: float = 0.0
    buckets: tuple[int, ...] = ()
    bounds: tuple[float, ...] = ()
    monotonic: bool = False
    temporality: int = 0


@dataclass
class Sample:
    """A gauge or sum data point of any export, with what identifies it."""

    name: str
    unit: str
    attributes: dict[str, Any]
    value: float
    resource: dict[str, Any]


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.shutdown()
        self.server_close()

    def release(self) -> None:
        self.released.set()

    def samples(self) -> list[Sample]:
        """Every gauge and sum point received on /v1/metrics, in the order they arrived."""
        with self.lock:
            received = [r.request for r in self.received if r.path == "/v1/metrics"]
        out: list[Sample] = []
        for request in received:
            for rm in request.resource_metrics:
                resource = {a.key: _value(a.value) for a in rm.resource.attributes}
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        which = metric.WhichOneof("data")
                        if which not in ("gauge", "sum"):
                            continue
                        for dp in getattr(metric, which).data_points:
                            value = dp.as_double if dp.WhichOneof("value") == "as_double" else float(dp.as_int)
                            out.append(Sample(metric.name, metric.unit, {a.key: _value(a.value) for a in dp.attributes},
                                              value, resource))
        return out

    def last(self) -> ExportMetricsServiceRequest:
        with self.lock:
            assert self.received, "no OTLP metrics export reached the receiver"
            return self.received[-1].request


def points(request: ExportMetricsServiceRequest, name: str) -> list[Point]:
    """Every data point of metric ``name`` in one export."""
    out: list[Point] = []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != name:
                    continue
                which = metric.WhichOneof("data")
                data = getattr(metric, which)
                for dp in data.data_points:
                    attributes = {a.key: _value(a.value) for a in dp.attributes}
                    if which == "histogram":
                        out.append(Point(which, attributes, count=dp.count, sum=dp.sum, buckets=tuple(dp.bucket_counts),
                                         bounds=tuple(dp.explicit_bounds), temporality=data.aggregation_temporality))
                    else:
                        value = dp.as_double if dp.WhichOneof("value") == "as_double" else dp.as_int
                        out.append(Point(which, attributes, value=value, monotonic=getattr(data, "is_monotonic", False),
                                         temporality=getattr(data, "aggregation_temporality", 0)))
    return out


def metric_names(request: ExportMetricsServiceRequest) -> set[str]:
    return {m.name for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def _value(value: Any) -> Any:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server hook
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        with self.server.lock:
            self.server.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, request))
        mode = self.server.mode
        if mode == "hang":
            self.server.released.wait(30)
        status = int(mode.partition(":")[2]) if mode.startswith("status:") else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass
