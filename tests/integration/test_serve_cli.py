"""`vilms serve --deployment NAME` starts the gateway on the compiled routes and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.compiler.minimal import MINIMAL
from vilms.compiler.facts.llamacpp import ENGINE_KEY_ENV


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, key: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_serve_runs_the_gateway_for_a_built_deployment(tmp_path):
    pytest.importorskip("httptools")
    (tmp_path / "vilms.yaml").write_text(MINIMAL)
    cli = [sys.executable, "-m", "vilms"]
    subprocess.run([*cli, "build", "-f", str(tmp_path / "vilms.yaml")], check=True, capture_output=True)
    port = _free_port()
    env = {**os.environ, "VILMS_API_KEYS": "k-one,k-two", ENGINE_KEY_ENV: "engine-key"}  # routes of a local llama.cpp deployment name it
    proc = subprocess.Popen([*cli, "serve", "--deployment", "dev", "--port", str(port), "-f", str(tmp_path / "vilms.yaml")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _ = _get(f"http://127.0.0.1:{port}/healthz")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.1)
        assert status == 200
        assert _get(f"http://127.0.0.1:{port}/v1/models")[0] == 401
        status, body = _get(f"http://127.0.0.1:{port}/v1/models", key="k-two")
        assert status == 200
        assert sorted(m["id"] for m in body["data"]) == ["chat", "support-bot"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "k-one" not in err + out and "k-two" not in err + out


def test_serve_names_the_built_deployments_when_one_is_missing(tmp_path):
    (tmp_path / "vilms.yaml").write_text(MINIMAL)
    cli = [sys.executable, "-m", "vilms"]
    subprocess.run([*cli, "build", "-f", str(tmp_path / "vilms.yaml")], check=True, capture_output=True)
    result = subprocess.run([*cli, "serve", "--deployment", "prod", "-f", str(tmp_path / "vilms.yaml")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "no routes for deployment 'prod'" in result.stderr and "deployments built: dev, gpu" in result.stderr
