"""The process entry point: ``python -m vilms.runtime.gateway``, start-up refusal, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request

import aiohttp
from gateway_fakes import FakeVLLM, free_port
from gateway_harness import routes_doc, run, sse_events, write_routes

from vilms.compiler.contracts.contract import API_VERSION
from vilms.compiler.contracts.telemetry import OtlpSpec
from vilms.runtime.gateway.telemetry import Telemetry


def start(routes_file, port: int, env: dict[str, str] | None = None) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [sys.executable, "-m", "vilms", "serve", "--routes", str(routes_file), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, text=True)


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("gateway did not become healthy")


def test_module_entry_point_serves_and_stops_on_sigterm(tmp_path):
    doc = routes_doc({"v": {"engine": "vllm", "endpoints": ["http://127.0.0.1:9"]}},
                     {"chat": {"backend": "v", "model": "m"}})
    routes_file = write_routes(tmp_path / "routes.yaml", doc)
    port = free_port()
    proc = start(routes_file, port)
    try:
        wait_healthy(port, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0
    assert "serving deployment test" in stderr and "gateway stopped" in stderr


def test_refuses_to_start_when_key_env_is_empty(tmp_path):
    doc = routes_doc({"v": {"engine": "vllm", "endpoints": ["http://127.0.0.1:9"]}},
                     {"chat": {"backend": "v", "model": "m"}}, api_keys_env="GW_TEST_KEYS")
    routes_file = write_routes(tmp_path / "routes.yaml", doc)
    env = {k: v for k, v in os.environ.items() if k != "GW_TEST_KEYS"}
    proc = subprocess.run([sys.executable, "-m", "vilms", "serve", "--routes", str(routes_file),
                           "--port", str(free_port())], capture_output=True, text=True, timeout=20, env=env)
    assert proc.returncode == 1
    assert "GW_TEST_KEYS" in proc.stderr and "unset or empty" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_routes_file_is_a_clear_error(tmp_path):
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(f"apiVersion: {API_VERSION}\nkind: GatewayRoutes\n")
    proc = subprocess.run([sys.executable, "-m", "vilms", "serve", "--routes", str(routes_file)],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1
    assert f"{routes_file}" in proc.stderr and "missing required key 'aliases'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    import socket

    doc = routes_doc({"v": {"engine": "vllm", "endpoints": ["http://127.0.0.1:9"]}},
                     {"chat": {"backend": "v", "model": "m"}})
    routes_file = write_routes(tmp_path / "routes.yaml", doc)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "vilms", "serve", "--routes", str(routes_file),
                               "--port", str(port)], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr


def test_sigterm_drains_in_flight_stream(tmp_path):
    async def scenario():
        fake = await FakeVLLM(chunk_delay_s=0.1).start()
        doc = routes_doc({"v": {"engine": "vllm", "endpoints": [fake.url]}},
                         {"chat": {"backend": "v", "model": "qwen2.5-1.5b"}})
        routes_file = write_routes(tmp_path / "routes.yaml", doc)
        port = free_port()
        proc = start(routes_file, port)
        try:
            await asyncio.to_thread(wait_healthy, port, proc)
            async with aiohttp.ClientSession() as client:
                async with client.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                       json={"model": "chat", "stream": True,
                                             "messages": [{"role": "user", "content": "Hi"}]}) as resp:
                    first = await resp.content.readany()
                    proc.send_signal(signal.SIGTERM)
                    rest = await resp.read()
            code = await asyncio.to_thread(proc.wait, 10)
        finally:
            if proc.poll() is None:
                proc.kill()
            await fake.stop()
        assert code == 0
        assert sse_events((first + rest).decode())[-1] == "[DONE]"

    run(scenario())


def test_otel_configured_but_not_installed_logs_once_and_continues(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # makes the lazy import fail
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with caplog.at_level(logging.WARNING, logger="vilms.gateway"):
        spec = OtlpSpec(endpoint=None, endpoint_env="OTEL_EP", headers_env={}, interval_s=15.0, metrics=False, traces=True)
        telemetry = Telemetry.from_settings(spec, {"OTEL_EP": "http://collector:4318"})
    assert not telemetry.enabled
    telemetry.record("/v1/chat/completions", time.perf_counter(), {"vilms.alias": "chat"})  # a no-op
    assert caplog.text.count("are not installed") == 1
    assert not Telemetry.from_settings(None).enabled
