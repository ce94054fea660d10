"""The whole loop on a tiny model, through the CLI: build → train → export → release →
build → run the llama.cpp servers the local plan lists → `vilms serve` → a chat request
per alias, both answered by the base model's server, which loads the released adapter and
serves it to the adapter's alias (that a GGUF LoRA changes llama.cpp's logits as the HF
adapter does is proven in tests/trainers/test_export.py; that each alias gets its own
adapter, in tests/runtime/test_llamacpp_adapters.py).

No Docker: the llama.cpp processes are started with the command lines the local runner
builds from ``generated/dev/local.yaml`` (model file, context, LoRA files, port).
"""

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
from pathlib import Path

import pytest

from vilms.compiler.contracts.local_plan import LOCAL_PLAN
from vilms.compiler.contracts.routes import ROUTES
from vilms.compiler.facts.llamacpp import ENGINE_KEY_ENV
from vilms.compiler.layout import Layout
from vilms.runtime.local.launch import GATEWAY, launches

pytest.importorskip("torch")
pytest.importorskip("llama_cpp")
pytest.importorskip("httptools")

CLI = [sys.executable, "-m", "vilms"]


def _vilms(*args: str, cwd: Path) -> str:
    result = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"vilms {' '.join(args)}: {result.stderr[-3000:]}"
    return result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else "process exited"
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # up (e.g. 401 without a key)
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, f"{url} did not come up"
            time.sleep(0.2)


def _chat(port: int, alias: str) -> dict:
    body = json.dumps({"model": alias, "messages": [{"role": "user", "content": "How do I reset my password?"}],
                       "max_tokens": 4, "temperature": 0}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer e2e-key"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return {"status": response.status, "headers": dict(response.headers), "body": json.loads(response.read())}


def _project(root: Path) -> None:
    from vilms.cli.demo import write_demo_project

    write_demo_project(root, api_keys_env="E2E_KEYS")


@pytest.mark.heavy
@pytest.mark.timeout(900)
def test_train_release_and_serve_through_the_gateway(tmp_path):
    _project(tmp_path)
    _vilms("build", cwd=tmp_path)
    _vilms("train", "support-v1", "--no-progress", cwd=tmp_path)
    (run_id,) = [p.name for p in (tmp_path / "artifacts").iterdir()]
    _vilms("export", run_id, "--gguf", cwd=tmp_path)
    assert (tmp_path / "artifacts" / run_id / "gguf" / "adapter.gguf").is_file()

    # release the run: vilms.yaml's release names it, and the build checks its gate
    text = (tmp_path / "vilms.yaml").read_text().replace("release: null", f"release: {run_id}")
    (tmp_path / "vilms.yaml").write_text(text)
    _vilms("build", cwd=tmp_path)
    plan = LOCAL_PLAN.load(tmp_path / "generated" / "dev" / "local.yaml")
    routes = ROUTES.load(tmp_path / "generated" / "dev" / "gateway" / "routes.yaml")
    adapter = routes.aliases["support-bot"].adapter
    assert adapter is not None and (adapter.name, adapter.released) == ("support-v1", True)

    procs: list[subprocess.Popen] = []
    try:
        # the servers exactly as the local runner starts them (llama-cpp-python's server here)
        for launch in launches(plan, Layout(tmp_path), tmp_path / "run", llama_server=None):
            if launch.kind == GATEWAY:
                continue
            for path, content in launch.files:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            proc = subprocess.Popen(launch.argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            procs.append(proc)
            _wait(launch.health_url, proc)
        assert [(s.model_alias, [lora.adapter for lora in s.lora]) for s in plan.servers] == [("tiny", ["support-v1"])]

        port = _free_port()
        gateway = subprocess.Popen([*CLI, "serve", "--deployment", "dev", "--port", str(port)], cwd=tmp_path,
                                   # the routes name the engine key `vilms up` makes; these servers take any
                                   env={**os.environ, "E2E_KEYS": "e2e-key", ENGINE_KEY_ENV: "unchecked"},
                                   stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        procs.append(gateway)
        _wait(f"http://127.0.0.1:{port}/healthz", gateway)

        base = _chat(port, "chat")
        tuned = _chat(port, "support-bot")
        for reply, alias, backend in ((base, "chat", "llamacpp-tiny"), (tuned, "support-bot", "llamacpp-tiny")):
            assert reply["status"] == 200
            assert reply["headers"]["x-vilms-alias"] == alias and reply["headers"]["x-vilms-backend"] == backend
            assert reply["body"]["object"] == "chat.completion" and reply["body"]["choices"]
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
