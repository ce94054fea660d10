"""OpenTelemetry export, when configured: one span per request reaches an OTLP/HTTP collector.

The collector is a plain HTTP server on 127.0.0.1 in its own thread (the SDK's exporter
posts synchronously), receiving the real OTLP protobuf payload.
"""

from __future__ import annotations

import http.server
import threading

import pytest
from gateway_fakes import FakeVLLM
from gateway_harness import gateway, routes_doc, run

pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="the otel extra is not installed")

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}


class Collector(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        self.posts: list[tuple[str, str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server hook
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.posts.append((self.path, self.headers.get("Content-Type", ""), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_spans_are_exported_to_the_configured_collector(tmp_path, monkeypatch):
    collector = Collector()
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    monkeypatch.setenv("VILMS_OTEL", endpoint)

    async def scenario():
        fake = await FakeVLLM().start()
        doc = routes_doc({"vllm": {"engine": "vllm", "endpoints": [fake.url]}},
                         {"chat": {"backend": "vllm", "model": "qwen2.5-1.5b"}}, telemetry={"endpoint": None, "endpoint_env": "VILMS_OTEL", "headers_env": {}, "interval_s": 15.0, "metrics": False, "traces": True})
        async with gateway(tmp_path, doc) as gw:
            for _ in range(3):
                status, _, _ = await gw.post("/v1/chat/completions", CHAT)
                assert status == 200
        await fake.stop()

    try:
        run(scenario())  # the gateway's shutdown flushes the batch processor
    finally:
        collector.shutdown()
    assert collector.posts, "no OTLP export reached the collector"
    path, content_type, body = collector.posts[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    payload = b"".join(p[2] for p in collector.posts)
    assert payload.count(b"POST /v1/chat/completions") == 3
    assert b"vilms-gateway" in payload and b"chat" in payload
