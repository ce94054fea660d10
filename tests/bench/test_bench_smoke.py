"""The gateway benchmarks run end to end for a few seconds each, so they cannot rot.

These check that each bench starts its processes, drives them, measures and reports; not the
figures (a busy test machine misses performance targets, and some soak probes fail until the
gateway has the bounds they look for).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_bench(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    # 0: every target met; 1: some missed (expected on a busy box). Anything else: the bench broke.
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def test_gateway_bench_smoke(tmp_path):
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    out = tmp_path / "gateway.json"
    proc = run_bench(["bench/gateway.py", "--seconds", "1", "--concurrency", "16", "--skip-portkey", "--skip-litellm",
                      "--otel-rounds", "2", "--json", str(out)], timeout=240)
    assert "Portkey skipped (--skip-portkey)" in proc.stdout
    assert "=== targets ===" in proc.stdout
    data = json.loads(out.read_text())
    points = {(p["target"], p["stream"]): p for p in data["points"]}
    otel = {(t, s) for t in ("vilms (otel off)", "vilms+otel") for s in (False, True)}
    assert set(points) == {("direct", False), ("vilms", False), ("direct", True), ("vilms", True)} | otel
    assert all(p["requests"] > 0 and p["cpu_us_per_req"] > 0 for p in points.values())
    assert all(points[k]["errors"] == 0 for k in otel | {("vilms", False), ("vilms", True)})
    assert data["resilience"]["requests"] > 0
    targets = {t["name"]: t for t in data["targets"]}
    assert {"ahead of Portkey: more req/s, every point", "CPU per request <= 84 us (c=16)"} <= set(targets)
    # the on/off comparison ran, and the exports reached the receiver (the value names their count)
    otel_target = targets["OTel metrics on: CPU/req <= 1.10x off"]
    assert otel_target["ok"] is not None and "exports" in otel_target["value"], otel_target
    assert "OTLP receiver: " in proc.stdout


def test_gateway_bench_portkey_plumbing(tmp_path, monkeypatch, capsys):
    bench = load("gateway")
    script = bench.wrk_script(tmp_path, True, bench.portkey_headers(9001), "portkey", bench.MODEL)
    lua = script.read_text()
    assert 'wrk.headers["x-portkey-provider"] = "openai"' in lua
    assert 'wrk.headers["x-portkey-custom-host"] = "http://127.0.0.1:9001/v1"' in lua
    assert '\\"model\\": \\"qwen2.5-1.5b\\"' in lua and '\\"stream\\": true' in lua
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    assert bench.ensure_portkey(tmp_path) is None
    assert "Portkey skipped: node and npm are needed" in capsys.readouterr().out


def test_soak_smoke(tmp_path):
    bench = load("soak")
    out = tmp_path / "soak.json"
    proc = run_bench(["bench/soak.py", "--minutes", "0.15", "--warmup-s", "2", "--cooldown-s", "2", "--sample-s", "1",
                      "--slow-bound-s", "3", "--drip-s", "1", "--slow-conns", "4", "--hang-s", "2",
                      "--stall-grace-s", "1", "--probe-gap-s", "0.1", "--good-rps", "20", "--good-clients", "4",
                      "--json", str(out)], timeout=120)
    assert "=== verdict ===" in proc.stdout
    data = json.loads(out.read_text())
    assert data["good"]["sent"] > 0
    assert len([s for s in data["samples"] if s["phase"] == "soak"]) >= 3
    assert {"start", "end", "max", "slope_per_min"} <= set(data["rss_mb"]) and data["fds"]["start"] > 0
    for name, record in data["probes"].items():  # each probe ran (or was still running at the end)
        assert record["runs"] > 0 or name in data["cut_short"], name
        assert record["errors"] == 0, (name, record["first_fail"])  # the probe's own code never raises
    assert set(data["probes"]) == set(bench.PROBES)
    assert {c["name"] for c in data["checks"]} >= {"0 good requests failed", "RSS slope <= 1 MB/min"}


def test_soak_helpers():
    bench = load("soak")
    assert bench.theil_sen([(0, 1.0), (1, 2.0), (2, 3.0), (3, 50.0), (4, 5.0)]) == pytest.approx(1.0)
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
           b"10\r\ndata: {\"a\": 1}\n\n\r\n" + b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
    status, headers, body = bench.split_response(raw)
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert bench.sse_events(body) == ['{"a": 1}', "[DONE]"]
    assert bench.is_openai_error(b'{"error": {"message": "x", "type": "y"}}')
    assert not bench.is_openai_error(b"<html></html>")
