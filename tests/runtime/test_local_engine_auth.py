"""What `vilms up` launches, for real (llama-cpp-python's server on the tiny GGUF behind the
gateway, on free ports): engine ports answer only the gateway, servers do not inherit the
gateway's keys, and a server that cannot load its model fails the start with the line that
says why."""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from local_project import API_KEY, KEYS_ENV, chat, free_port, kill_all_under, processes_under, write_project
from tiny_gguf import write_tiny_llama

from tests.conftest import run_vilms

pytest.importorskip("llama_cpp")
pytest.importorskip("httptools")
pytest.importorskip("gguf")

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(120)]

OTHER_SECRET = "AWS_SECRET_ACCESS_KEY"  # any variable a server has no use for


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    engine_port, gateway_port = free_port(), free_port()
    write_project(root, gateway_port=gateway_port)
    file = root / "vilms.yaml"
    doc = yaml.safe_load(file.read_text())
    doc["deployments"]["dev"]["engine_port"] = engine_port
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert run_vilms("build", cwd=root).code == 0
    yield root, engine_port, gateway_port
    run_vilms("down", cwd=root, timeout=60)
    kill_all_under(root)


def get(url: str, key: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_engine_ports_need_the_run_key_and_servers_get_no_gateway_keys(project):
    root, engine_port, gateway_port = project
    env = {KEYS_ENV: API_KEY, OTHER_SECRET: "do-not-leak"}
    result = run_vilms("up", cwd=root, env=env)
    assert result.code == 0, result.err
    run = root / ".vilms" / "run" / "dev"
    key_file = run / "engine.key"
    key = key_file.read_text().strip()
    assert len(key) >= 32 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    config = run / "llamacpp-tiny.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and json.loads(config.read_text())["api_key"] == key

    engine = f"http://127.0.0.1:{engine_port}"
    assert get(f"{engine}/v1/models") == 401  # a direct request without the key
    assert get(f"{engine}/v1/models", "wrong") == 401
    assert get(f"{engine}/v1/models", API_KEY) == 401  # a gateway key is not the engine key
    assert get(f"{engine}/v1/models", key) == 200
    status, headers, body = chat(gateway_port)  # the gateway sends it
    assert status == 200 and body["choices"] and headers["x-vilms-backend"] == "llamacpp-tiny"

    report = json.loads(run_vilms("status", "--format", "json", cwd=root).out)
    assert report["healthy"] is True  # `status` probes with the key
    pids = {p["name"]: p["pid"] for p in report["processes"]}
    server, gateway = environ_of(pids["llamacpp-tiny"]), environ_of(pids["gateway"])
    assert KEYS_ENV not in server and OTHER_SECRET not in server and "VILMS_ENGINE_KEY" not in server
    assert "PATH" in server and server.get("PYTHONUNBUFFERED") == "1"
    assert gateway[KEYS_ENV] == API_KEY and gateway["VILMS_ENGINE_KEY"] == key
    server_cmdline = Path(f"/proc/{pids['llamacpp-tiny']}/cmdline").read_bytes().decode()
    assert key not in server_cmdline

    for path in [*(root / "generated").rglob("*"), *(run / "logs").rglob("*"), run / "state.json"]:
        if path.is_file():
            assert key not in path.read_text(errors="replace"), path

    assert run_vilms("down", cwd=root).code == 0
    assert not processes_under(root)
    assert run_vilms("up", cwd=root, env=env).code == 0
    assert key_file.read_text().strip() != key  # a new key for each fresh start
    assert chat(gateway_port)[0] == 200
    assert os.path.exists(key_file)


def test_a_model_that_cannot_load_fails_the_start_with_the_line_that_says_why(project):
    # a header `vilms up` accepts, a model llama.cpp cannot load (a truncated GGUF is refused before
    # any start: tests/runtime/test_local_preflight.py)
    root, _, _ = project
    write_tiny_llama(root / "models" / "tiny.gguf", omit=("output_norm.weight",))
    result = run_vilms("up", cwd=root, env={KEYS_ENV: API_KEY})
    assert result.code == 1, (result.out, result.err)
    log = root / ".vilms" / "run" / "dev" / "logs" / "llamacpp-tiny.log"
    assert result.err.strip().splitlines() == [
        "deployment dev did not start: llamacpp-tiny exited with code 1 while starting",
        "llamacpp-tiny: llama_model_load: error loading model: check_tensor_dims: "
        "tensor 'output_norm.weight' not found",
        f"  hint: nothing was left running; full log: {log}"], result.err
    assert "Traceback" in log.read_text()  # the log keeps it all; `up` shows the one line
    assert not processes_under(root)
