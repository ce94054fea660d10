"""The gateway's upstream side (issue 10): honest readiness, ejection, deadlines, checked
answers, no leaks of upstream detail, token usage per request."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import aiohttp
import pytest
from gateway_fakes import FakeOllama, FakeVLLM, free_port
from gateway_harness import gateway, routes_doc, run, sse_events, write_routes
from hypothesis import given, settings
from hypothesis import strategies as st
from raw_upstream import RawUpstream, chunk, delta, head, sse

from vilms.runtime.gateway import server as gateway_server
from vilms.runtime.gateway.app import App
from vilms.runtime.gateway.server import serve
from vilms.runtime.gateway.state import GatewayState

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
STREAM = {**CHAT, "stream": True}


def doc_for(*urls: str, engine: str = "vllm", **settings: Any) -> dict[str, Any]:
    return routes_doc({"b": {"engine": engine, "endpoints": list(urls)}},
                      {"chat": {"backend": "b", "model": "qwen2.5-1.5b"}}, **settings)


def metric(text: str, line_start: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every finished request's Exchange, as the app records it."""
    seen: list[Any] = []
    original = App._record

    def record(self: App, route: str, ex: Any, *rest: Any) -> None:
        seen.append(ex)
        original(self, route, ex, *rest)

    monkeypatch.setattr(App, "_record", record)
    return seen


# -- 1. readiness is the gateway's own; ejection after consecutive failures ----------------------

def test_one_engine_500_keeps_the_gateway_ready_and_is_not_retried_on_the_same_endpoint(tmp_path):
    async def scenario():
        fake = await FakeVLLM(fault="500").start()
        async with gateway(tmp_path, doc_for(fake.url, retries=2)) as gw:
            status, _, body = await gw.post("/v1/chat/completions", CHAT)
            ready = await gw.get("/readyz")
            text = (await gw.get("/metrics"))[2]
        await fake.stop()
        assert status == 500 and body["error"]["code"] == "upstream_status_500"
        assert len(fake.requests) == 1  # a 500 may be the request's fault: not sent to the same engine again
        assert ready[0] == 200 and ready[2]["status"] == "ready"
        assert metric(text, f'vilms_gateway_endpoint_up{{endpoint="{fake.url}"}}') == 1
        assert metric(text, f'vilms_gateway_endpoint_consecutive_failures{{endpoint="{fake.url}"}}') == 1

    run(scenario())


def test_readyz_stays_200_with_every_endpoint_ejected(tmp_path):
    async def scenario():
        dead = f"http://127.0.0.1:{free_port()}"
        async with gateway(tmp_path, doc_for(dead, retries=0, eject_after=1)) as gw:
            status, _, _ = await gw.post("/v1/chat/completions", CHAT)
            ready = await gw.get("/readyz")
            text = (await gw.get("/metrics"))[2]
        assert status == 502
        assert ready[0] == 200
        assert metric(text, f'vilms_gateway_endpoint_up{{endpoint="{dead}"}}') == 0

    run(scenario())


def test_endpoint_is_ejected_after_eject_after_consecutive_failures(tmp_path):
    async def scenario():
        bad, good = await FakeVLLM(fault="500").start(), await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(bad.url, good.url, eject_after=3)) as gw:
            answers = [(await gw.post("/v1/chat/completions", CHAT))[0] for _ in range(8)]
            text = (await gw.get("/metrics"))[2]
        await bad.stop()
        await good.stop()
        assert answers == [200] * 8
        assert len(bad.requests) == 3  # not ejected after one failure; ejected after three
        assert metric(text, f'vilms_gateway_endpoint_up{{endpoint="{bad.url}"}}') == 0
        assert metric(text, f'vilms_gateway_endpoint_up{{endpoint="{good.url}"}}') == 1

    run(scenario())


def test_a_500_is_never_sent_again_to_an_endpoint_that_answered_it(tmp_path):
    async def scenario():
        one, two = await FakeVLLM(fault="500").start(), await FakeVLLM(fault="500").start()
        async with gateway(tmp_path, doc_for(one.url, two.url, retries=2)) as gw:
            status, _, _ = await gw.post("/v1/chat/completions", CHAT)
        await one.stop()
        await two.stop()
        assert status == 500
        assert (len(one.requests), len(two.requests)) == (1, 1)

    run(scenario())


def test_retry_prefers_another_endpoint_over_the_one_that_just_failed(tmp_path):
    async def scenario():
        # Both drop the connection (an endpoint-level failure, retryable anywhere); three attempts.
        async def drop(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
            writer.transport.abort()

        one, two = await RawUpstream(drop).start(), await RawUpstream(drop).start()
        async with gateway(tmp_path, doc_for(one.url, two.url, retries=3)) as gw:
            status, _, _ = await gw.post("/v1/chat/completions", CHAT)
        await one.stop()
        await two.stop()
        assert status == 502
        assert (len(one.requests), len(two.requests)) == (2, 2)  # alternating, never twice in a row

    run(scenario())


# -- 2. a client that stops reading -------------------------------------------------------------

def test_stalled_stream_client_is_aborted_and_the_engine_request_cancelled(tmp_path):
    async def flood(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        await upstream.send(writer, head(200, "text/event-stream"))
        event = chunk(sse(delta("x" * 16000)))
        while True:  # an engine generating as fast as it can, until the gateway hangs up
            await upstream.send(writer, event)

    upstream = RawUpstream(flood)

    async def scenario():
        await upstream.start()
        async with gateway(tmp_path, doc_for(upstream.url, write_timeout_s=0.3)) as gw:
            port = int(gw.url.rsplit(":", 1)[1])
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, ("127.0.0.1", port))
            raw = json.dumps(STREAM).encode()
            await loop.sock_sendall(sock, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(raw), raw))
            assert (await loop.sock_recv(sock, 100)).startswith(b"HTTP/1.1 200")
            # ... and never reads again.
            await asyncio.wait_for(upstream.closed.wait(), 10)
            text = (await gw.get("/metrics"))[2]
            inflight = gw.state.inflight
            sock.close()
        await upstream.stop()
        assert inflight == 0
        assert metric(text, 'vilms_gateway_client_write_timeouts_total{alias="chat",backend="b",engine="vllm"}') == 1
        assert metric(text, 'vilms_gateway_requests_total{alias="chat",backend="b",engine="vllm",status="499"}') == 1

    run(scenario())


# -- 3. successful answers are checked ------------------------------------------------------------

@pytest.mark.parametrize("body", [b"<html><body>502 Bad Gateway</body></html>", b"", b"[1, 2]", b'{"error": "oops"}'])
def test_non_json_200_is_a_retryable_engine_error(tmp_path, body):
    async def answer(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, "application/json", len(body)) + body)
        await writer.drain()

    async def scenario():
        broken, good = await RawUpstream(answer).start(), await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(broken.url, good.url)) as gw:
            async with gw.client.post(gw.url + "/v1/chat/completions", json=CHAT) as resp:
                status, data = resp.status, await resp.read()
            alone = doc_for(broken.url, retries=0)
            write_routes(gw.routes_file, alone)
            gw.state.reload()
            async with gw.client.post(gw.url + "/v1/chat/completions", json=CHAT) as resp:
                lone_status, lone = resp.status, await resp.json()
            text = (await gw.get("/metrics"))[2]
        await broken.stop()
        await good.stop()
        assert status == 200 and json.loads(data)["object"] == "chat.completion"
        assert len(broken.requests) == 2 and len(good.requests) == 1
        assert lone_status == 502 and lone["error"]["code"] == "upstream_bad_response"
        assert metric(text, 'vilms_gateway_upstream_errors_total{alias="chat",backend="b",engine="vllm",kind="bad_response"}') == 2

    run(scenario())


def test_stream_that_ends_without_done_ends_with_an_error_event_and_is_recorded_502(tmp_path):
    async def cut_short(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, "text/event-stream") + chunk(sse(delta("Hel"))) + chunk(sse(delta("lo"))))
        writer.write(b"0\r\n\r\n")  # a clean end of the body, but no [DONE]
        await writer.drain()

    async def scenario():
        upstream = await RawUpstream(cut_short).start()
        async with gateway(tmp_path, doc_for(upstream.url)) as gw:
            status, _, text = await gw.post("/v1/chat/completions", STREAM)
            metrics = (await gw.get("/metrics"))[2]
        await upstream.stop()
        events = sse_events(text)
        assert status == 200  # the head was out before the stream broke
        assert "[DONE]" not in events
        error = json.loads(events[-1])["error"]
        assert error["code"] == "upstream_stream_interrupted" and set(error) == {"message", "type", "param", "code"}
        assert metric(metrics, 'vilms_gateway_requests_total{alias="chat",backend="b",engine="vllm",status="502"}') == 1
        assert metric(metrics, 'vilms_gateway_upstream_errors_total{alias="chat",backend="b",engine="vllm",kind="midstream"}') == 1

    run(scenario())


def test_stream_with_html_instead_of_events_is_retried(tmp_path):
    async def html(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        page = b"<html>\n\n<body>oops</body>\n\n</html>\n\n"
        writer.write(head(200, "text/html", len(page)) + page)
        await writer.drain()

    async def scenario():
        broken, good = await RawUpstream(html).start(), await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(broken.url, good.url)) as gw:
            status, _, text = await gw.post("/v1/chat/completions", STREAM)
        await broken.stop()
        await good.stop()
        assert status == 200 and sse_events(text)[-1] == "[DONE]" and "html" not in text
        assert len(broken.requests) == 1 and len(good.requests) == 1

    run(scenario())


def test_stream_cut_by_the_end_of_the_drain_ends_with_an_error_event(tmp_path, monkeypatch):
    monkeypatch.setattr(gateway_server, "SHUTDOWN_GRACE_S", 0.8)

    async def scenario():
        slow = await FakeVLLM(chunk_delay_s=0.1, reply=["tok"] * 200).start()
        state = GatewayState(write_routes(tmp_path / "routes.yaml", doc_for(slow.url)), environ={})
        port = free_port()
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(serve(state, "127.0.0.1", port, ready=ready, stop=stop, install_signals=False))
        await ready.wait()
        async with aiohttp.ClientSession() as client:
            async with client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=STREAM) as resp:
                first = await resp.content.readany()
                stop.set()  # SIGTERM: drain
                rest = await resp.content.read()
        await task
        await slow.stop()
        events = sse_events((first + rest).decode())
        assert "[DONE]" not in events
        assert json.loads(events[-1])["error"]["code"] == "shutting_down"
        assert metric(state.metrics.render(), 'vilms_gateway_requests_total{alias="chat",backend="b",engine="vllm",status="503"}') == 1
        assert slow.cancelled == 1

    run(scenario())


# -- 4. no upstream detail leaks -----------------------------------------------------------------

def test_upstream_error_text_is_not_logged_and_clients_see_no_urls(tmp_path, caplog):
    secret = "SECRET-PROMPT-4242"

    async def echo_500(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        text = request["messages"][0]["content"]
        body = json.dumps({"error": {"message": f"failed on prompt {text} at /opt/engine/x.py:12",
                                     "type": "InternalServerError", "param": None, "code": 500}}).encode()
        writer.write(head(500, "application/json", len(body)) + body)
        await writer.drain()

    async def scenario():
        caplog.set_level(logging.DEBUG, logger="vilms.gateway")
        echo = await RawUpstream(echo_500).start()
        dead = f"http://127.0.0.1:{free_port()}"
        body = {**CHAT, "messages": [{"role": "user", "content": secret}]}
        async with gateway(tmp_path, doc_for(echo.url, retries=1)) as gw:
            failed = await gw.post("/v1/chat/completions", body)
            write_routes(gw.routes_file, doc_for(dead, retries=0))
            gw.state.reload()
            refused = await gw.post("/v1/chat/completions", body)
            hung = await FakeVLLM(fault="hang").start()
            write_routes(gw.routes_file, doc_for(hung.url, retries=0, first_byte_timeout_s=0.2))
            gw.state.reload()
            timed_out = await gw.post("/v1/chat/completions", body)
        await echo.stop()
        await hung.stop()
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert secret not in logged and "/opt/engine" not in logged
        assert "kind=status_500" in logged  # a summary is still logged
        for status, _, error in (failed, refused, timed_out):
            text = json.dumps(error)
            assert status >= 500 and "127.0.0.1" not in text and "http://" not in text
            assert secret not in text and "/opt/engine" not in text
            assert "'b'" in error["error"]["message"]  # the backend id is named

    run(scenario())


# -- 5. deadlines, response cap, ops key --------------------------------------------------------

def test_frozen_replica_costs_first_byte_timeout_not_read_timeout(tmp_path):
    async def scenario():
        frozen, good = await FakeVLLM(fault="hang").start(), await FakeVLLM().start()
        doc = doc_for(frozen.url, good.url, read_timeout_s=20.0, first_byte_timeout_s=0.3)
        async with gateway(tmp_path, doc) as gw:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            status, _, _ = await gw.post("/v1/chat/completions", CHAT)
            elapsed = loop.time() - t0
        await frozen.stop()
        await good.stop()
        assert status == 200 and 0.25 <= elapsed < 3.0

    run(scenario())


def test_request_timeout_bounds_retries_and_fallbacks_with_a_504(tmp_path):
    async def scenario():
        one, two = await FakeVLLM(fault="hang").start(), await FakeVLLM(fault="hang").start()
        doc = routes_doc({"b": {"engine": "vllm", "endpoints": [one.url]}, "c": {"engine": "vllm", "endpoints": [two.url]}},
                         {"chat": {"backend": "b", "model": "qwen2.5-1.5b", "fallbacks": ["spare"]},
                          "spare": {"backend": "c", "model": "qwen2.5-1.5b"}},
                         retries=5, read_timeout_s=20.0, first_byte_timeout_s=0.4, request_timeout_s=0.7)
        async with gateway(tmp_path, doc) as gw:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            status, _, body = await gw.post("/v1/chat/completions", CHAT)
            elapsed = loop.time() - t0
        await one.stop()
        await two.stop()
        assert status == 504 and body["error"]["code"] == "request_timeout"
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert 0.6 <= elapsed < 3.0

    run(scenario())


def test_oversized_non_streaming_answer_is_refused_without_reading_it_all(tmp_path):
    declared = 16 << 20

    async def huge(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        await upstream.send(writer, head(200, "application/json", declared))
        piece = b" " * (256 << 10)
        for _ in range(declared // len(piece)):
            await upstream.send(writer, piece)

    upstream = RawUpstream(huge)

    async def scenario():
        await upstream.start()
        async with gateway(tmp_path, doc_for(upstream.url, retries=0, max_response_bytes=64 << 10)) as gw:
            status, _, body = await gw.post("/v1/chat/completions", CHAT)
            await asyncio.wait_for(upstream.closed.wait(), 10)
        await upstream.stop()
        assert status == 502 and body["error"]["code"] == "upstream_too_large"
        assert upstream.written < declared // 2  # the gateway hung up early

    run(scenario())


def test_ops_key_guards_metrics_and_readiness_detail(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(fake.url, ops_key_env="OPS"), environ={"OPS": "ops-secret"}) as gw:
            open_metrics = await gw.client.get(gw.url + "/metrics")
            wrong = await gw.client.get(gw.url + "/metrics", headers={"Authorization": "Bearer nope"})
            metrics = await gw.get("/metrics", headers={"Authorization": "Bearer ops-secret"})
            public = await gw.get("/readyz")
            detail = await gw.get("/readyz", headers={"Authorization": "Bearer ops-secret"})
        await fake.stop()
        assert open_metrics.status == 401 and wrong.status == 401
        assert metrics[0] == 200 and "vilms_gateway_endpoint_up" in metrics[2]
        assert public[0] == 200 and public[2]["status"] == "ready"
        assert fake.url not in json.dumps(public[2]) and "backends" not in public[2]
        assert detail[0] == 200 and fake.url in json.dumps(detail[2])

    run(scenario())


def test_readyz_public_body_has_no_urls_without_an_ops_key(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(fake.url)) as gw:
            ready = await gw.get("/readyz")
        await fake.stop()
        assert ready[0] == 200 and "http://" not in json.dumps(ready[2]) and "127.0.0.1" not in json.dumps(ready[2])
        assert ready[2]["backends"]["b"]["endpoints"] == 1

    run(scenario())


def test_gateway_refuses_to_start_when_the_ops_key_variable_is_empty(tmp_path):
    from vilms.compiler.errors import ActionError

    with pytest.raises(ActionError) as err:
        GatewayState(write_routes(tmp_path / "routes.yaml", doc_for("http://127.0.0.1:1", ops_key_env="OPS")),
                     environ={"OPS": " "})
    assert "OPS" in err.value.message


# -- 6. token usage per request --------------------------------------------------------------------

def test_usage_from_vllm_bodies_and_streams(tmp_path, exchanges):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(fake.url)) as gw:
            plain = await gw.post("/v1/chat/completions", CHAT)
            quiet = await gw.post("/v1/chat/completions", STREAM)
            asked = await gw.post("/v1/chat/completions", {**STREAM, "stream_options": {"include_usage": True}})
        await fake.stop()
        assert plain[0] == quiet[0] == asked[0] == 200
        assert [(ex.prompt_tokens, ex.completion_tokens) for ex in exchanges] == [(10, 6)] * 3
        # The gateway asked the engine for usage; the client that did not ask does not get the extra chunk.
        assert fake.requests[1].body["stream_options"] == {"include_usage": True}
        quiet_events = sse_events(quiet[2])
        assert quiet_events[-1] == "[DONE]" and not any("usage" in e for e in quiet_events[:-1])
        asked_events = sse_events(asked[2])
        assert json.loads(asked_events[-2])["usage"]["completion_tokens"] == 6

    run(scenario())


def test_usage_from_ollama_bodies_and_streams(tmp_path, exchanges):
    async def scenario():
        fake = await FakeOllama().start()
        async with gateway(tmp_path, doc_for(fake.url, engine="ollama")) as gw:
            await gw.post("/v1/chat/completions", CHAT)
            await gw.post("/v1/chat/completions", STREAM)
        await fake.stop()
        assert [(ex.prompt_tokens, ex.completion_tokens) for ex in exchanges] == [(1, 6), (1, 6)]

    run(scenario())


def test_usage_unknown_is_none(tmp_path, exchanges):
    async def no_usage(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        body = json.dumps({"object": "chat.completion", "choices": []}).encode()
        writer.write(head(200, "application/json", len(body)) + body)
        await writer.drain()

    async def scenario():
        upstream = await RawUpstream(no_usage).start()
        async with gateway(tmp_path, doc_for(upstream.url)) as gw:
            status, _, _ = await gw.post("/v1/chat/completions", CHAT)
        await upstream.stop()
        assert status == 200
        assert (exchanges[0].prompt_tokens, exchanges[0].completion_tokens) == (None, None)

    run(scenario())


# -- parts ------------------------------------------------------------------------------------------

def _sse_check(include_usage: bool = False):  # type: ignore[no-untyped-def]
    from vilms.runtime.gateway.upstream.base import UpstreamCall
    from vilms.runtime.gateway.upstream.openai import SSECheck

    call = UpstreamCall(path="/v1/chat/completions", payload={}, stream=True, include_usage=include_usage)
    return call, SSECheck(call)


def test_sse_check_passes_whole_events_and_needs_done():
    from vilms.runtime.gateway.upstream.base import BadResponse

    usage = {"id": "x", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
    stream = sse(delta("a")) + sse(delta("b")) + sse(usage) + b"data: [DONE]\n\n"
    for size in (1, 5, 64, len(stream)):
        call, check = _sse_check()
        out = b"".join(check.feed(stream[i:i + size]) for i in range(0, len(stream), size)) + check.finish()
        assert out == sse(delta("a")) + sse(delta("b")) + b"data: [DONE]\n\n"  # the usage chunk nobody asked for is gone
        assert (call.prompt_tokens, call.completion_tokens) == (7, 3)
    call, check = _sse_check(include_usage=True)
    assert check.feed(stream) == stream  # asked for: kept
    crlf = stream.replace(b"\n", b"\r\n")
    call, check = _sse_check(include_usage=True)
    assert check.feed(crlf[:30]) + check.feed(crlf[30:]) + check.finish() == crlf
    _, cut = _sse_check()
    cut.feed(sse(delta("a")) + b"data: [DO")
    with pytest.raises(BadResponse):
        cut.finish()
    _, quoted = _sse_check()  # "[DONE]" inside a token is not the end marker
    quoted.feed(sse(delta("data: [DONE]")))
    with pytest.raises(BadResponse):
        quoted.finish()
    _, html = _sse_check()
    with pytest.raises(BadResponse):
        html.feed(b"<html>\n\n</html>\n\n")


_EVENTS = st.one_of(
    st.builds(lambda t: ("delta", sse(delta(t))), st.text(max_size=12)),
    st.builds(lambda p, c, choices: ("usage" if choices else "usage_only",
                                     sse({"id": "x", "choices": [delta("z")] if choices else [],
                                          "usage": {"prompt_tokens": p, "completion_tokens": c}})),
              st.integers(0, 10**6), st.integers(0, 10**6), st.booleans()),
    st.just(("comment", b": keep-alive\n\n")),
    st.just(("junk", b'data: {"prompt_tokens" broken\n\n')),  # looks like usage, is not JSON: passed on
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(events=st.lists(_EVENTS, max_size=8), crlf=st.booleans(), include_usage=st.booleans(),
       cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_sse_check_keeps_every_event_but_unasked_usage_wherever_the_stream_is_cut(events, crlf, include_usage, cuts):
    """Property: whatever the events and however the bytes are split, the output is the input
    minus usage-only events the client did not ask for, and the last usage is noted."""
    events = [*events, ("done", b"data: [DONE]\n\n")]
    fix = (lambda b: b.replace(b"\n", b"\r\n")) if crlf else (lambda b: b)
    stream = b"".join(fix(e) for _, e in events)
    call, check = _sse_check(include_usage=include_usage)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    out = b"".join(check.feed(stream[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)) + check.finish()
    assert out == b"".join(fix(e) for kind, e in events if include_usage or kind != "usage_only")
    usages = [json.loads(e[6:]) for kind, e in events if kind.startswith("usage")]
    expected = (usages[-1]["usage"]["prompt_tokens"], usages[-1]["usage"]["completion_tokens"]) if usages else (None, None)
    assert (call.prompt_tokens, call.completion_tokens) == expected


def test_balancer_ejects_after_consecutive_failures_and_excludes():
    from vilms.runtime.gateway.balancer import Balancer, Endpoint

    a, b, c = Endpoint("http://u:p@a:1/x?k=1"), Endpoint("b"), Endpoint("c")
    assert a.label == "http://a:1/x"  # no credentials, no query in logs and metrics
    balancer = Balancer([a, b, c], "round_robin")
    assert not Balancer.failed(a, 10, now=0, eject_after=2) and not a.cooling(1)
    assert Balancer.failed(a, 10, now=0, eject_after=2) and a.cooling(1)
    Balancer.succeeded(a)
    assert a.failures == 0 and not a.cooling(1)
    assert balancer.pick(now=0, exclude={a.url}).url == "b"
    assert balancer.pick(now=0, exclude={a.url, b.url}).url == "c"
    assert balancer.pick(now=0, exclude={a.url, b.url, c.url}) is None
    assert Balancer([a], "round_robin").pick(exclude={a.url}) is None
