"""Ollama native responses → OpenAI responses, whole bodies and NDJSON streams as SSE.

Chat stream lines (``{"model", "created_at", "message": {"role", "content"}, "done"}``)
become ``chat.completion.chunk`` events; the ``done: true`` line becomes the final chunk
with ``finish_reason`` (and a usage chunk when ``stream_options.include_usage``), then
``data: [DONE]``. Usage comes from ``prompt_eval_count`` and ``eval_count``.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time
from typing import Any

from .base import MAX_EVENT_BYTES, BadResponse, UpstreamCall, UpstreamStreamError

_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def _usage(data: dict[str, Any]) -> dict[str, int]:
    prompt = _count(data.get("prompt_eval_count"))
    completion = _count(data.get("eval_count"))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish_reason(data: dict[str, Any], tool_calls: bool) -> str:
    if tool_calls:
        return "tool_calls"
    return "length" if data.get("done_reason") == "length" else "stop"


def _tool_calls(calls: Any, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for offset, call in enumerate(calls or []):
        function = call.get("function", {}) if isinstance(call, dict) else {}
        arguments = function.get("arguments", {})
        out.append({
            "index": start + offset,
            "id": call.get("id") or _new_id("call_"),
            "type": "function",
            "function": {"name": function.get("name", ""),
                         "arguments": arguments if isinstance(arguments, str) else _DUMPS(arguments)},
        })
    return out


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadResponse("Ollama returned a body that is not JSON") from None
    if not isinstance(data, dict):
        raise BadResponse("Ollama returned an unexpected body")
    if "error" in data:
        raise UpstreamStreamError(str(data["error"]))
    return data


def _note_usage(call: UpstreamCall, usage: dict[str, int], model: object = None) -> None:
    call.prompt_tokens, call.completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
    call.response_model = model


def chat_completion(raw: bytes, call: UpstreamCall) -> bytes:
    data = _parse(raw)
    message = data.get("message") or {}
    calls = _tool_calls(message.get("tool_calls"))
    out_message: dict[str, Any] = {"role": "assistant", "content": message.get("content", "")}
    if message.get("thinking"):
        out_message["reasoning"] = message["thinking"]
    if calls:
        for item in calls:
            item.pop("index")
        out_message["tool_calls"] = calls
    usage = _usage(data)
    _note_usage(call, usage, data.get("model"))
    return _DUMPS({
        "id": _new_id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()),
        "model": data.get("model", ""),
        "choices": [{"index": 0, "message": out_message, "logprobs": None,
                     "finish_reason": _finish_reason(data, bool(calls))}],
        "usage": usage,
    }).encode()


def text_completion(raw: bytes, call: UpstreamCall) -> bytes:
    data = _parse(raw)
    usage = _usage(data)
    _note_usage(call, usage, data.get("model"))
    return _DUMPS({
        "id": _new_id("cmpl-"), "object": "text_completion", "created": int(time.time()),
        "model": data.get("model", ""),
        "choices": [{"index": 0, "text": data.get("response", ""), "logprobs": None,
                     "finish_reason": _finish_reason(data, False)}],
        "usage": usage,
    }).encode()


def embeddings(raw: bytes, call: UpstreamCall) -> bytes:
    data = _parse(raw)
    vectors = data.get("embeddings") or []
    items = []
    for index, vector in enumerate(vectors):
        value: Any = vector
        if call.base64_embeddings:
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        items.append({"object": "embedding", "embedding": value, "index": index})
    prompt = _count(data.get("prompt_eval_count"))
    _note_usage(call, {"prompt_tokens": prompt, "completion_tokens": 0}, data.get("model"))
    return _DUMPS({"object": "list", "data": items, "model": data.get("model", ""),
                   "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}).encode()


class NDJSONToSSE:
    """Stateful translator of one Ollama NDJSON stream (chat or generate) into OpenAI SSE."""

    __slots__ = ("chat", "call", "_buffer", "_id", "_created", "_model", "_started", "_done",
                 "_tool_index")

    def __init__(self, chat: bool, call: UpstreamCall) -> None:
        self.chat = chat
        self.call = call
        self._buffer = b""
        self._id = _new_id("chatcmpl-" if chat else "cmpl-")
        self._created = int(time.time())
        self._model = ""
        self._started = False
        self._done = False
        self._tool_index = 0

    def feed(self, chunk: bytes) -> bytes:
        self._buffer += chunk
        if b"\n" not in self._buffer:
            if len(self._buffer) > MAX_EVENT_BYTES:
                raise BadResponse("an Ollama stream line exceeds the gateway's limit")
            return b""
        *lines, self._buffer = self._buffer.split(b"\n")
        return b"".join(self._line(line) for line in lines if line.strip())

    def finish(self) -> bytes:
        tail = self._line(self._buffer) if self._buffer.strip() else b""
        self._buffer = b""
        if not self._done:
            raise BadResponse("Ollama ended the stream before it was done")
        return tail

    def _line(self, line: bytes) -> bytes:
        data = _parse(line)
        self._model = data.get("model", self._model)
        if self.chat:
            out = self._chat_events(data)
        else:
            out = self._generate_events(data)
        if data.get("done"):
            self._done = True
            usage = _usage(data)
            _note_usage(self.call, usage, self._model)
            if self.call.include_usage:
                out += self._event([], usage=usage)
            out += b"data: [DONE]\n\n"
        return out

    def _chat_events(self, data: dict[str, Any]) -> bytes:
        message = data.get("message") or {}
        delta: dict[str, Any] = {}
        if not self._started:
            delta["role"] = "assistant"
            self._started = True
        if message.get("content"):
            delta["content"] = message["content"]
        elif "role" in delta:
            delta["content"] = ""
        if message.get("thinking"):
            delta["reasoning"] = message["thinking"]
        calls = _tool_calls(message.get("tool_calls"), self._tool_index)
        if calls:
            self._tool_index += len(calls)
            delta["tool_calls"] = calls
        out = b""
        if delta:
            out = self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])
        if data.get("done"):
            reason = _finish_reason(data, self._tool_index > 0)
            out += self._event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}])
        return out

    def _generate_events(self, data: dict[str, Any]) -> bytes:
        out = b""
        text = data.get("response", "")
        if text:
            out = self._event([{"index": 0, "text": text, "logprobs": None, "finish_reason": None}])
        if data.get("done"):
            reason = _finish_reason(data, False)
            out += self._event([{"index": 0, "text": "", "logprobs": None, "finish_reason": reason}])
        return out

    def _event(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = usage
        return b"data: " + _DUMPS(body).encode() + b"\n\n"
