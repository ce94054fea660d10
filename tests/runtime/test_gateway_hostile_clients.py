"""The gateway under hostile clients (issue 10): endless header lines, header floods, deep JSON.

Each attack runs against an in-process gateway with keys configured (none of these attacks needs one):
the gateway must answer at its limit, keep its memory flat and keep serving ``/healthz`` meanwhile.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from gateway_fakes import FakeVLLM
from gateway_harness import gateway, routes_doc, run
from raw_http import endless, read_response, rss_bytes, sliced, stream_until_answered

from vilms.runtime.gateway.httpserver import MAX_HEAD_BYTES
from vilms.runtime.gateway.jsonbody import MAX_JSON_DEPTH

KEY = {"Authorization": "Bearer sk-hostile"}
PIECE = b"a" * 32768


def _doc(fake: FakeVLLM) -> dict:
    return routes_doc({"vllm": {"engine": "vllm", "endpoints": [fake.url]}},
                      {"chat": {"backend": "vllm", "model": "qwen2.5-1.5b"},
                       "embed": {"backend": "vllm", "model": "qwen2.5-1.5b", "task": "embedding"}},
                      api_keys_env="GW_KEYS")


class HealthProbe:
    """GET /healthz over one keep-alive connection, again and again until stopped, noting the slowest answer."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers = 0
        self.slowest = 0.0
        self.running = asyncio.Event()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        while True:
            t0 = time.perf_counter()
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _ = await read_response(reader, timeout=30.0)
            assert status == 200
            self.slowest = max(self.slowest, time.perf_counter() - t0)
            self.answers += 1
            self.running.set()
            if self.stop.is_set():
                break
        writer.close()


@pytest.mark.parametrize("attackers", [1, 4])
def test_an_endless_header_line_is_431_at_the_head_limit_with_flat_memory(tmp_path, attackers):
    """Issue 10 item 1: a header value with no line end, streamed without end, is refused at ~64 KiB."""
    cap = 16 * 1024 * 1024  # what each attacker would send if never stopped (the tester sent 128 MiB)

    async def scenario() -> None:
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, _doc(fake), environ={"GW_KEYS": "sk-hostile"}) as gw:
            port = int(gw.url.rsplit(":", 1)[1])
            probe = HealthProbe(port)
            probing = asyncio.create_task(probe.run())
            await asyncio.wait_for(probe.running.wait(), 10)
            base = peak = rss_bytes()

            def sample() -> None:
                nonlocal peak
                peak = max(peak, rss_bytes())

            prefix = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Endless: "
            results = await asyncio.gather(*(stream_until_answered(port, endless(prefix, PIECE, cap), sample)
                                             for _ in range(attackers)))
            probe.stop.set()
            await asyncio.wait_for(probing, 30)
        await fake.stop()
        for status, sent, body in results:
            assert status == 431 and b"headers_too_large" in body, (status, sent)
            assert sent <= MAX_HEAD_BYTES + 4 * len(PIECE), sent  # answered at the limit, not at the 408 timeout
        assert peak - base < 4 * 1024 * 1024, f"RSS grew by {(peak - base) / 2**20:.1f} MiB"
        assert probe.answers >= 2 and probe.slowest < 0.5, (probe.answers, probe.slowest)

    run(scenario())


@pytest.mark.parametrize(("count", "size"), [(1000, 16), (1000, 16000), (101, 8)],
                         ids=["1000-in-16KB", "1000x16KB", "101-small"])
def test_header_floods_are_431(tmp_path, count, size):
    """Issue 10 item 2: 1,000 headers (16 KB in all: the count limit, 100), 1,000 of 16 KB (the head limit)."""

    async def scenario() -> None:
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, _doc(fake), environ={"GW_KEYS": "sk-hostile"}) as gw:
            port = int(gw.url.rsplit(":", 1)[1])
            head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-hostile\r\n" + b"".join(
                b"X-H%d: %s\r\n" % (i, b"v" * size) for i in range(count)) + b"\r\n"
            status, sent, body = await stream_until_answered(port, sliced(head, len(PIECE)))
            ok = await gw.get("/v1/models", headers={**KEY, **{f"X-H{i}": "v" for i in range(90)}})
        await fake.stop()
        assert status == 431 and b"headers_too_large" in body
        assert sent <= MAX_HEAD_BYTES + 4 * len(PIECE), sent
        assert ok[0] == 200  # 90 headers are fine

    run(scenario())


def _nested(depth: int) -> bytes:
    """A JSON value ``depth`` containers deep, lists and objects mixed."""
    out = b"1"
    for level in range(depth):
        out = b"[" + out + b"]" if level % 2 else b'{"k":' + out + b"}"
    return out


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
def test_deep_json_is_400_on_every_endpoint(tmp_path, route):
    """Issue 10 item 4: 254 to 1,023 levels answered 500 (orjson.dumps' limit); anything past the limit is 400."""
    bodies = {"/v1/chat/completions": b'{"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "x": %s}',
              "/v1/completions": b'{"model": "chat", "prompt": "Hi", "x": %s}',
              "/v1/embeddings": b'{"model": "embed", "input": "Hi", "x": %s}'}

    async def scenario() -> None:
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, _doc(fake), environ={"GW_KEYS": "sk-hostile"}) as gw:
            answers = {}
            for depth in (MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, 254, 300, 1023, 1024, 100_000):
                async with gw.client.post(gw.url + route, data=bodies[route] % _nested(depth),
                                          headers={**KEY, "Content-Type": "application/json"}) as resp:
                    answers[depth + 1] = (resp.status, (await resp.json())["error"]["code"]
                                          if resp.status != 200 else None)
        await fake.stop()
        assert answers.pop(MAX_JSON_DEPTH) == (200, None)  # the body is its own level: depth == the limit
        assert set(answers.values()) == {(400, "invalid_json")}, answers
        assert len(fake.requests) == 1

    run(scenario())
