"""What the gateway sends a llama.cpp server and how it treats its failures (issue 17), with fakes:
the field policy, no retry after an upstream died mid-request, no retry of a read timeout on the
same endpoint, streams without a finish_reason, non-streaming requests merged from a stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from gateway_harness import gateway, routes_doc, run, sse_events
from hypothesis import given, settings
from hypothesis import strategies as st
from raw_upstream import RawUpstream, chunk, delta, head, sse

from vilms.runtime.gateway.apierrors import ApiError
from vilms.runtime.gateway.fields import CHAT_FIELDS, COMPLETION_FIELDS, REFUSED, vouch
from vilms.runtime.gateway.upstream.base import BadResponse, UpstreamCall
from vilms.runtime.gateway.upstream.openai import SSECheck, aggregate_stream

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
KNOWN = CHAT_FIELDS | COMPLETION_FIELDS | REFUSED
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)


# -- the field policy ------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(extra=st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: k not in KNOWN), json_values, max_size=6))
def test_fields_the_gateway_does_not_vouch_for_are_dropped_and_named(extra):
    body = {**CHAT, "temperature": 0.5, "stream": False, **extra}
    notes = vouch(body, "chat")
    assert body == {**CHAT, "temperature": 0.5, "stream": False}
    assert notes == ([f"dropped={'+'.join(sorted(extra))}"] if extra else [])


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(sorted(REFUSED)), value=json_values, kind=st.sampled_from(["chat", "completions"]))
def test_grammar_fields_are_refused_whatever_their_value(field, value, kind):
    with pytest.raises(ApiError) as err:
        vouch({**CHAT, field: value}, kind)
    assert (err.value.status, err.value.code, err.value.param) == (400, "unsupported_parameter", field)


@pytest.mark.parametrize("fmt", [
    {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "minLength": 20000}}},
    {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array", "items": {"maxItems": 10**9}}}},
    {"type": "json_schema", "json_schema": {"name": "x", "schema": {"enum": ["a" * 20000]}}},
    {"type": "json_object", "schema": {"type": "array", "minItems": "many"}},
    {"type": "grammar"},
    "json",
])
def test_response_formats_that_would_become_huge_grammars_are_refused(fmt):
    with pytest.raises(ApiError) as err:
        vouch({**CHAT, "response_format": fmt}, "chat")
    assert (err.value.status, err.value.param) == (400, "response_format")


@pytest.mark.parametrize("fmt", [
    {"type": "text"}, {"type": "json_object"},
    {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "maxLength": 200}}},
])
def test_ordinary_response_formats_pass(fmt):
    body = {**CHAT, "response_format": fmt}
    assert vouch(body, "chat") == [] and body["response_format"] == fmt


@pytest.mark.parametrize("bias", [{"x": 1}, {"1": 1000}, {str(i): 1 for i in range(301)}, [1, 2]])
def test_bad_logit_bias_is_refused(bias):
    with pytest.raises(ApiError):
        vouch({**CHAT, "logit_bias": bias}, "chat")


# -- non-streaming answers merged from a stream --------------------------------------------------

def test_a_stream_is_merged_into_one_chat_completion():
    events = [{**delta("Hel"), "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"},
                                            "finish_reason": None}]},
              delta("lo"),
              {**delta(""), "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}]
    raw = b"".join(sse(e) for e in events) + sse("[DONE]")
    call = UpstreamCall(path="/v1/chat/completions", payload={}, stream=False, aggregate=True)
    out = orjson.loads(aggregate_stream("chat", call, raw))
    assert out["object"] == "chat.completion"
    assert out["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "logprobs": None,
                               "finish_reason": "length"}]
    assert out["usage"] == {"completion_tokens": 2} and call.completion_tokens == 2


def test_a_merged_stream_without_finish_reason_is_a_bad_response():
    raw = sse(delta("Hel")) + sse("[DONE]")
    with pytest.raises(BadResponse):
        aggregate_stream("chat", UpstreamCall(path="/", payload={}, stream=False, aggregate=True), raw)


def test_a_llamacpp_stream_that_ends_without_finish_reason_holds_back_done():
    check = SSECheck(UpstreamCall(path="/", payload={}, stream=True), require_finish=True)
    passed = check.feed(sse(delta("a")) + sse("[DONE]"))
    assert b"[DONE]" not in passed and b'"a"' in passed
    with pytest.raises(BadResponse):
        check.finish()


# -- retries, with raw upstreams -------------------------------------------------------------------

def doc_for(primary: list[str], spare: str, **gw: Any) -> dict[str, Any]:
    return routes_doc({"b": {"engine": "llamacpp", "endpoints": primary}, "s": {"engine": "llamacpp", "endpoints": [spare]}},
                      {"chat": {"backend": "b", "model": "m", "fallbacks": ["spare"]},
                       "spare": {"backend": "s", "model": "m"}}, **gw)


async def _died(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
    writer.write(head(200, "text/event-stream"))  # llama-cpp-python's head comes at once
    await writer.drain()
    writer.transport.abort()  # the engine crashed before its first token


async def _answer(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
    done = {**delta(""), "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    writer.write(head(200, "text/event-stream") + chunk(sse(delta("ok")) + sse(done) + sse("[DONE]")) + b"0\r\n\r\n")
    await writer.drain()


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_whose_upstream_died_is_not_retried_nor_sent_to_a_fallback(tmp_path, stream):
    async def scenario():
        one, two = await RawUpstream(_died).start(), await RawUpstream(_died).start()
        spare = await RawUpstream(_answer).start()
        try:
            async with gateway(tmp_path, doc_for([one.url, two.url], spare.url, retries=3)) as gw:
                return await gw.post("/v1/chat/completions", {**CHAT, "stream": stream}), \
                    len(one.requests) + len(two.requests), len(spare.requests)
        finally:
            for upstream in (one, two, spare):
                await upstream.stop()

    (status, _, body), primary, fallback = run(scenario())
    assert (primary, fallback) == (1, 0)
    assert status == 502 and body["error"]["code"] == "upstream_died"


def test_a_read_timeout_is_not_retried_on_the_same_endpoint(tmp_path):
    async def hang(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def scenario():
        one, spare = await RawUpstream(hang).start(), await RawUpstream(_answer).start()
        try:
            async with gateway(tmp_path, doc_for([one.url], spare.url, retries=3, first_byte_timeout_s=0.3)) as gw:
                return await gw.post("/v1/chat/completions", CHAT), len(one.requests), len(spare.requests)
        finally:
            await one.stop()
            await spare.stop()

    (status, headers, body), hung, fallback = run(scenario())
    assert (hung, fallback) == (1, 1)
    assert status == 200 and headers["x-vilms-fallback-from"] == "chat"
    assert body["choices"][0]["message"]["content"] == "ok"


def test_a_llamacpp_stream_cut_without_finish_reason_ends_with_an_error_event(tmp_path):
    async def cut(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, "text/event-stream") + chunk(sse(delta("a")) + sse("[DONE]")) + b"0\r\n\r\n")
        await writer.drain()

    async def scenario():
        one, spare = await RawUpstream(cut).start(), await RawUpstream(_answer).start()
        try:
            async with gateway(tmp_path, doc_for([one.url], spare.url)) as gw:
                status, _, text = await gw.post("/v1/chat/completions", {**CHAT, "stream": True})
                _, _, metrics = await gw.get("/metrics")
                return status, text, metrics
        finally:
            await one.stop()
            await spare.stop()

    status, text, metrics = run(scenario())
    events = sse_events(text)
    assert status == 200 and "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "upstream_stream_interrupted"
    assert 'status="502"' in metrics


def test_readiness_says_degraded_while_every_endpoint_of_an_alias_is_ejected(tmp_path):
    async def hang(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def scenario():
        one = await RawUpstream(hang).start()
        doc = routes_doc({"b": {"engine": "llamacpp", "endpoints": [one.url]}}, {"chat": {"backend": "b", "model": "m"}},
                         first_byte_timeout_s=0.3)
        try:
            async with gateway(tmp_path, doc) as gw:
                before = await gw.get("/readyz")
                answer = await gw.post("/v1/chat/completions", CHAT)
                after = await gw.get("/readyz")
                return before, answer, after
        finally:
            await one.stop()

    before, answer, after = run(scenario())
    assert before[0] == 200 and before[2]["status"] == "ready"
    assert answer[0] == 504
    assert after[0] == 200  # the gateway itself is fine: the local supervisor must not restart it
    assert after[2]["status"] == "degraded" and after[2]["unservable"] == ["chat"]


def test_a_non_streaming_request_is_streamed_to_llamacpp_so_that_leaving_can_stop_it(tmp_path):
    async def scenario():
        one, spare = await RawUpstream(_answer).start(), await RawUpstream(_answer).start()
        try:
            async with gateway(tmp_path, doc_for([one.url], spare.url)) as gw:
                return await gw.post("/v1/chat/completions", CHAT), one.requests
        finally:
            await one.stop()
            await spare.stop()

    (status, _, body), requests = run(scenario())
    assert requests[0]["stream"] is True
    assert status == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "ok" and body["choices"][0]["finish_reason"] == "stop"
