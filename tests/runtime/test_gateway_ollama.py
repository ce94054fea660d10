"""Gateway against a fake Ollama: native API with num_ctx, translated back to OpenAI shapes."""

from __future__ import annotations

import base64
import json
import struct

from gateway_fakes import FakeOllama
from gateway_harness import gateway, routes_doc, run, sse_events

from vilms.runtime.gateway.upstream.base import UpstreamCall

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}


def ollama_doc(*servers: FakeOllama, **settings):  # type: ignore[no-untyped-def]
    return routes_doc(
        {"ollama": {"engine": "ollama", "endpoints": [s.url for s in servers]}},
        {"chat": {"backend": "ollama", "model": "qwen2.5-1.5b", "context": 4096, "max_output_tokens": 1024,
                  "params": {"temperature": 0.2}, "system": "You are terse."},
         "embed": {"backend": "ollama", "model": "qwen2.5-1.5b", "task": "embedding", "context": 512,
                   "max_output_tokens": 1}},
        **settings)


def test_chat_non_streaming_is_translated_with_usage_and_num_ctx(tmp_path):
    async def scenario():
        fake = await FakeOllama().start()
        async with gateway(tmp_path, ollama_doc(fake)) as gw:
            status, headers, body = await gw.post("/v1/chat/completions", {**CHAT, "top_p": 0.9, "stop": "END",
                                                                          "seed": 7, "max_tokens": 50})
        await fake.stop()
        assert status == 200
        sent = fake.requests[0]
        assert sent.path == "/api/chat"
        assert sent.body["stream"] is False
        assert sent.body["options"] == {"num_ctx": 4096, "temperature": 0.2, "top_p": 0.9, "seed": 7,
                                        "stop": ["END"], "num_predict": 50}
        assert sent.body["messages"][0] == {"role": "system", "content": "You are terse."}
        assert body["object"] == "chat.completion"
        assert body["id"].startswith("chatcmpl-")
        assert body["model"] == "qwen2.5-1.5b"
        assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello from the fake server."}
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
        assert "x-vilms-trimmed" not in headers

    run(scenario())


def test_chat_streaming_ndjson_becomes_sse_chunks(tmp_path):
    async def scenario():
        fake = await FakeOllama().start()
        async with gateway(tmp_path, ollama_doc(fake)) as gw:
            request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
            status, headers, text = await gw.post("/v1/chat/completions", request)
        await fake.stop()
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
        assert fake.requests[0].body["stream"] is True
        assert fake.requests[0].body["options"]["num_ctx"] == 4096
        events = sse_events(text)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert len({c["id"] for c in chunks}) == 1
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        text_out = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text_out == "Hello from the fake server."
        finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
        assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6

    run(scenario())


def test_length_finish_reason_when_num_predict_stops_generation(tmp_path):
    async def scenario():
        fake = await FakeOllama().start()
        async with gateway(tmp_path, ollama_doc(fake)) as gw:
            _, _, body = await gw.post("/v1/chat/completions", {**CHAT, "max_completion_tokens": 2})
        await fake.stop()
        assert fake.requests[0].body["options"]["num_predict"] == 2
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["choices"][0]["message"]["content"] == "Hello from"

    run(scenario())


def test_unsupported_fields_are_dropped_and_reported(tmp_path):
    async def scenario():
        fake = await FakeOllama().start()
        async with gateway(tmp_path, ollama_doc(fake)) as gw:
            request = {**CHAT, "logit_bias": {"1": 2}, "user": "u-1", "n": 1,
                       "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
                       "tool_choice": {"type": "function", "function": {"name": "f"}}}
            status, headers, _ = await gw.post("/v1/chat/completions", request)
            many = await gw.post("/v1/chat/completions", {**CHAT, "n": 3})
            metrics = (await gw.get("/metrics"))[2]
        await fake.stop()
        assert status == 200
        sent = fake.requests[0].body
        assert "logit_bias" not in sent and "user" not in sent and "tool_choice" not in sent and "n" not in sent
        assert sent["tools"][0]["function"]["name"] == "f"
        assert headers["x-vilms-trimmed"] == "dropped=tool_choice, dropped=logit_bias|user"
        assert many[0] == 400 and many[2]["error"]["param"] == "n"
        assert 'vilms_gateway_trimmed_total{alias="chat",what="dropped"} 2' in metrics

    run(scenario())


def test_tool_calls_and_images_are_translated_both_ways():
    from gateway_harness import make_route

    from vilms.runtime.gateway.upstream import ollama_request, ollama_response

    alias = make_route(name="chat", backend="o", model="m", context=1024, max_output_tokens=64)
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    notes: list[str] = []
    payload = ollama_request.chat_request({"messages": messages}, alias, notes)
    assert payload["messages"][0] == {"role": "user", "content": "What is this?", "images": ["AAAA"]}
    assert payload["messages"][1]["tool_calls"] == [{"function": {"name": "lookup", "arguments": {"q": "x"}}}]
    assert payload["messages"][2] == {"role": "tool", "content": "42", "tool_name": "lookup"}
    raw = json.dumps({"model": "m", "created_at": "2026-11-23T10:00:00Z", "done": True, "done_reason": "stop",
                      "message": {"role": "assistant", "content": "",
                                  "tool_calls": [{"function": {"name": "lookup", "arguments": {"q": "y"}}}]},
                      "prompt_eval_count": 3, "eval_count": 2}).encode()
    out = json.loads(ollama_response.chat_completion(raw, UpstreamCall(path="/api/chat", payload={}, stream=False)))
    call = out["choices"][0]["message"]["tool_calls"][0]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert call["type"] == "function" and json.loads(call["function"]["arguments"]) == {"q": "y"}


def test_ndjson_lines_split_across_chunks_are_reassembled():
    from vilms.runtime.gateway.upstream.ollama_response import NDJSONToSSE

    lines = b"".join(json.dumps(x).encode() + b"\n" for x in [
        {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": "Hé"}, "done": False},
        {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1}])
    translator = NDJSONToSSE(chat=True, call=UpstreamCall(path="/api/chat", payload={}, stream=True))
    out = b"".join(translator.feed(lines[i:i + 7]) for i in range(0, len(lines), 7)) + translator.finish()
    events = sse_events(out.decode())
    assert json.loads(events[0])["choices"][0]["delta"] == {"role": "assistant", "content": "Hé"}
    assert json.loads(events[1])["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == "[DONE]"


def test_completions_use_generate_and_stream(tmp_path):
    async def scenario():
        fake = await FakeOllama().start()
        async with gateway(tmp_path, ollama_doc(fake)) as gw:
            plain = await gw.post("/v1/completions", {"model": "chat", "prompt": "Once upon"})
            streamed = await gw.post("/v1/completions", {"model": "chat", "prompt": "Once", "stream": True})
        await fake.stop()
        assert fake.requests[0].path == "/api/generate"
        assert fake.requests[0].body["prompt"] == "Once upon"
        assert fake.requests[0].body["options"]["num_ctx"] == 4096
        assert plain[0] == 200 and plain[2]["object"] == "text_completion"
        assert plain[2]["choices"][0]["text"] == "Hello from the fake server."
        events = sse_events(streamed[2])
        assert events[-1] == "[DONE]"
        assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]) == "Hello from the fake server."

    run(scenario())


def test_embeddings_use_embed_in_float_and_base64(tmp_path):
    async def scenario():
        fake = await FakeOllama().start()
        async with gateway(tmp_path, ollama_doc(fake)) as gw:
            floats = await gw.post("/v1/embeddings", {"model": "embed", "input": ["a", "b"]})
            packed = await gw.post("/v1/embeddings", {"model": "embed", "input": "a", "encoding_format": "base64"})
            tokens = await gw.post("/v1/embeddings", {"model": "embed", "input": [1, 2, 3]})
        await fake.stop()
        assert fake.requests[0].path == "/api/embed"
        assert fake.requests[0].body["options"] == {"num_ctx": 512}
        assert floats[0] == 200 and floats[2]["object"] == "list"
        assert [d["index"] for d in floats[2]["data"]] == [0, 1]
        assert floats[2]["data"][1]["embedding"] == [0.02, 0.04, 0.06, 0.08]
        vector = struct.unpack("<4f", base64.b64decode(packed[2]["data"][0]["embedding"]))
        assert [round(v, 4) for v in vector] == [0.01, 0.02, 0.03, 0.04]
        assert tokens[0] == 400

    run(scenario())


def test_error_line_before_first_token_is_retried(tmp_path):
    async def scenario():
        broken, good = await FakeOllama(fault="error_line").start(), await FakeOllama().start()
        async with gateway(tmp_path, ollama_doc(broken, good)) as gw:
            status, _, text = await gw.post("/v1/chat/completions", {**CHAT, "stream": True})
        await broken.stop()
        await good.stop()
        assert status == 200 and sse_events(text)[-1] == "[DONE]"
        assert len(broken.requests) == 1 and len(good.requests) == 1

    run(scenario())


def test_ollama_drop_mid_stream_terminates_client_stream(tmp_path):
    async def scenario():
        first, second = await FakeOllama(fault="drop").start(), await FakeOllama().start()
        async with gateway(tmp_path, ollama_doc(first, second)) as gw:
            status, _, text = await gw.post("/v1/chat/completions", {**CHAT, "stream": True})
        await first.stop()
        await second.stop()
        events = sse_events(text)
        assert status == 200
        assert "[DONE]" not in events
        assert json.loads(events[-1])["error"]["code"] == "upstream_stream_interrupted"
        assert second.requests == []

    run(scenario())


def test_unknown_ollama_model_error_is_openai_shaped(tmp_path):
    async def scenario():
        fake = await FakeOllama(models=("something-else",)).start()
        async with gateway(tmp_path, ollama_doc(fake)) as gw:
            status, _, body = await gw.post("/v1/chat/completions", CHAT)
        await fake.stop()
        assert status == 404
        assert body["error"]["message"] == 'model "qwen2.5-1.5b" not found, try pulling it first'
        assert len(fake.requests) == 1

    run(scenario())
