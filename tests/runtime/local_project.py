"""Helpers for the local runner tests: a project serving a tiny GGUF, and process hygiene.

Every process the runner starts names a path inside its project folder on its command
line (the supervisor ``--file``, llama.cpp ``--model``, the gateway ``--routes``), so
``/proc/*/cmdline`` finds them all, and the tests' finalizers can kill them by group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import yaml
from tiny_gguf import write_tiny_llama

from tests.support.procs import processes_under

API_KEY = "local-test-key"
KEYS_ENV = "VILMS_LOCAL_TEST_KEYS"
LLAMACPP_PORT = 8101  # the first port local.yaml gives a llama.cpp server


def free_port() -> int:
    """A port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_llamacpp_port() -> None:
    """Fail (not skip) when the port local.yaml gives the first llama.cpp server is taken."""
    import pytest

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", LLAMACPP_PORT))
        except OSError:
            pytest.fail(f"port {LLAMACPP_PORT} is taken by another program; the local plan's llama.cpp server needs it")


def write_project(root: Path, *, gateway_port: int, gguf: str = "file:models/tiny.gguf",
                  extra_deployments: dict | None = None) -> Path:
    """A vilms.yaml whose one model is a tiny GGUF built here, served by a target-local deployment."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    write_tiny_llama(root / "models" / "tiny.gguf")
    model = {"source": "file:models/tiny.gguf", "family": "llama", "context": 256, "chat_template": "chatml",
             "architecture": {"layers": 2, "hidden_size": 64, "heads": 4, "kv_heads": 2, "head_dim": 16,
                              "intermediate_size": 128, "vocab_size": 267, "tie_word_embeddings": False}}
    if gguf.startswith("hf:"):
        model["source"] = "hf:test-org/tiny"
        model["gguf"] = gguf
    deployments = {"dev": {"hardware": "box", "target": "local", "engine": "llamacpp", "gateway_port": gateway_port},
                   **(extra_deployments or {})}
    file = root / "vilms.yaml"
    file.write_text(yaml.safe_dump({
        "apiVersion": "vilms/v1",
        "project": "local-test",
        "hardware": {"box": {"kind": "cpu", "memory": "4GiB", "cpus": 2}},
        "models": {"tiny": model},
        "aliases": {"chat": "tiny"},
        "deployments": deployments,
        "gateway": {"api_keys": f"env:{KEYS_ENV}"},
    }, sort_keys=False))
    return file


def write_hf_cache(cache: Path, repo: str, filename: str, source: Path) -> None:
    """Lay ``source`` out as huggingface_hub's cache does: refs/main → snapshots/<commit>/file → blob."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "blobs").mkdir(exist_ok=True)
    blob = folder / "blobs" / "deadbeef"
    blob.write_bytes(source.read_bytes())
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / filename).symlink_to(os.path.relpath(blob, snapshot))


def kill_all_under(root: Path, timeout_s: float = 10.0) -> dict[int, str]:
    """SIGKILL the process group of every process under ``root``; returns what was found."""
    found = processes_under(root)
    for pid in found:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + timeout_s
    while processes_under(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def wait_until(predicate, timeout_s: float = 20.0, interval_s: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {predicate}")
        time.sleep(interval_s)


def chat(port: int, alias: str = "chat") -> tuple[int, dict, dict]:
    body = json.dumps({"model": alias, "messages": [{"role": "user", "content": "Hello there"}],
                       "max_tokens": 4, "temperature": 0}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), json.loads(response.read())
