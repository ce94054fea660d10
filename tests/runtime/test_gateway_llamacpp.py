"""Integration with a REAL llama.cpp server (llama-cpp-python) running a tiny GGUF built here.

Skipped only when llama_cpp is not importable (the ``serve`` extra is not installed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

pytest.importorskip("llama_cpp")

from gateway_fakes import free_port  # noqa: E402
from gateway_harness import gateway, routes_doc, run, sse_events  # noqa: E402
from tiny_gguf import write_tiny_llama  # noqa: E402

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "tiny",
         "--n_ctx", "512", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"llama.cpp server exited: {proc.communicate()[1][-2000:]}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "llama.cpp server did not start"
        time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def doc(url: str, **settings):  # type: ignore[no-untyped-def]
    return routes_doc({"local": {"engine": "llamacpp", "endpoints": [url]}},
                      {"chat": {"backend": "local", "model": "tiny", "context": 512, "max_output_tokens": 8,
                                "params": {"temperature": 0.0}}},
                      **settings)


MESSAGES = [{"role": "user", "content": "Hello there"}]


def test_chat_non_streaming_through_real_llamacpp(llama_server, tmp_path):
    async def scenario():
        async with gateway(tmp_path, doc(llama_server)) as gw:
            return await gw.post("/v1/chat/completions", {"model": "chat", "messages": MESSAGES, "max_tokens": 100})

    status, headers, body = run(scenario(), timeout=120)
    assert status == 200, body
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] <= 8  # clamped to the alias's max_output_tokens
    assert headers["x-vilms-trimmed"] == "max_tokens=100->8"
    assert headers["x-vilms-backend"] == "local"


def test_chat_streaming_through_real_llamacpp(llama_server, tmp_path):
    async def scenario():
        async with gateway(tmp_path, doc(llama_server)) as gw:
            return await gw.post("/v1/chat/completions", {"model": "chat", "messages": MESSAGES, "stream": True,
                                                          "max_completion_tokens": 4})

    status, headers, text = run(scenario(), timeout=120)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) <= 4


def test_completions_through_real_llamacpp(llama_server, tmp_path):
    async def scenario():
        async with gateway(tmp_path, doc(llama_server)) as gw:
            return await gw.post("/v1/completions", {"model": "chat", "prompt": "Once upon a time", "max_tokens": 3})

    status, _, body = run(scenario(), timeout=120)
    assert status == 200, body
    assert body["object"] == "text_completion"
    assert body["model"] == "tiny" or body["model"].endswith(".gguf")
    assert body["choices"][0]["finish_reason"] in ("length", "stop")


def test_overlong_prompt_rejected_before_reaching_llamacpp(llama_server, tmp_path):
    async def scenario():
        async with gateway(tmp_path, doc(llama_server)) as gw:
            return await gw.post("/v1/chat/completions",
                                 {"model": "chat", "messages": [{"role": "user", "content": "word " * 1000}]})

    status, _, body = run(scenario(), timeout=120)
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"


def test_dead_llamacpp_endpoint_falls_over_to_live_one(llama_server, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"

    async def scenario():
        routes = routes_doc({"local": {"engine": "llamacpp", "endpoints": [dead, llama_server]}},
                            {"chat": {"backend": "local", "model": "tiny", "context": 512, "max_output_tokens": 4}})
        async with gateway(tmp_path, routes) as gw:
            return [await gw.post("/v1/chat/completions", {"model": "chat", "messages": MESSAGES}) for _ in range(3)]

    results = run(scenario(), timeout=120)
    assert [r[0] for r in results] == [200, 200, 200]
