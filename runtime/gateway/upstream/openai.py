"""Engines that already speak the OpenAI API: vLLM and the llama.cpp servers (llama-server,
llama-cpp-python's).

The request is forwarded with ``model`` set to the alias's upstream model (vLLM: served
name or LoRA adapter name; llama.cpp: the base model or the adapter's name, which selects
the model entry of llama-cpp-python's server). A llama.cpp backend that loaded adapters
also gets ``lora``: every slot's scale, 1.0 for the alias's adapter and 0.0 for the others
(llama-server applies it per request; an empty list would mean its start-up scales, and
llama-cpp-python's server ignores the field); a client's own ``lora`` never passes. Answers pass
through byte for byte, checked: a non-streaming body must be a JSON object (its ``usage``
is noted); a stream must be SSE and end with ``data: [DONE]``. Streams pass event by event
(an event split across reads waits for its end). The gateway always asks for usage
(``stream_options.include_usage``) and drops the usage-only final chunk when the client
had not asked for it.
"""

from __future__ import annotations

from typing import Any

import orjson

from vilms.compiler.contracts.routes import Route

from .base import MAX_EVENT_BYTES, BadResponse, UpstreamCall, tokens

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}
_SSE_STARTS = (b"data:", b":", b"event:", b"id:", b"retry:")
_USAGE_KEY = b'"prompt_tokens"'


class OpenAIEngine:
    __slots__ = ("name", "lora_slots")

    def __init__(self, name: str, lora_slots: int = 0) -> None:
        self.name = name
        self.lora_slots = lora_slots

    def prepare(self, kind: str, body: dict[str, Any], alias: Route) -> UpstreamCall:
        body["model"] = alias.model
        if self.name == "llamacpp":
            body.pop("lora", None)
            if self.lora_slots:
                slot = alias.adapter.slot if alias.adapter is not None else None
                body["lora"] = [{"id": i, "scale": 1.0 if i == slot else 0.0} for i in range(self.lora_slots)]
        if self.name == "llamacpp" and "max_completion_tokens" in body:
            # llama-cpp-python's server only knows max_tokens.
            value = body.pop("max_completion_tokens")
            body["max_tokens"] = min(value, body.get("max_tokens", value))
        stream = kind != "embeddings" and bool(body.get("stream"))
        aggregate = self.name == "llamacpp" and kind != "embeddings" and not stream
        if aggregate:  # streamed upstream, so that closing the connection stops the engine
            body["stream"] = stream = True
        include_usage = False
        if stream:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            if not include_usage:
                body["stream_options"] = {**options, "include_usage": True} if isinstance(options, dict) \
                    else {"include_usage": True}
        if aggregate:
            return UpstreamCall(path=PATHS[kind], payload=body, stream=False, include_usage=True, aggregate=True)
        return UpstreamCall(path=PATHS[kind], payload=body, stream=stream, include_usage=include_usage)

    def translate(self, kind: str, call: UpstreamCall, raw: bytes) -> bytes:
        if call.aggregate:
            return aggregate_stream(kind, call, raw)
        try:
            data = orjson.loads(raw)
        except ValueError:
            raise BadResponse("the engine's answer is not JSON") from None
        if type(data) is not dict or "error" in data:
            raise BadResponse("the engine's answer is not a result object")
        call.prompt_tokens, call.completion_tokens = tokens(data.get("usage"))
        call.response_model = data.get("model")
        return raw

    def stream_translator(self, kind: str, call: UpstreamCall) -> SSECheck:
        return SSECheck(call, require_finish=self.name == "llamacpp")


class SSECheck:
    """Passes an OpenAI SSE stream through whole events at a time, checking that it is SSE,
    noting usage, and remembering whether the last event so far is ``data: [DONE]``.

    Each chunk passed on holds whole events. The checks look at the chunk's end (the end
    marker) and around each ``"prompt_tokens"`` (usage) with C-speed ``bytes`` searches only:
    a stream costs a few microseconds, whatever its length.
    """

    __slots__ = ("call", "_rest", "_started", "_done", "_require_finish", "_finished", "_cut")

    def __init__(self, call: UpstreamCall, require_finish: bool = False) -> None:
        self.call = call
        self._rest = b""
        self._started = False
        self._done = False
        # llama.cpp: a stream must carry a finish_reason before [DONE] (llama-cpp-python's
        # interrupt_requests ends a stream with [DONE] and none); without one, the [DONE] is held back
        self._require_finish = require_finish
        self._finished = not require_finish
        self._cut = False

    def feed(self, chunk: bytes) -> bytes:
        if self._rest:
            chunk = self._rest + chunk
        cr = b"\r" in chunk  # CRLF line ends: rare, and one memchr to rule out
        i = chunk.rfind(b"\n\n")
        end = i + 2 if i >= 0 else 0
        if cr:
            j = chunk.rfind(b"\n\r\n")
            end = max(end, j + 3 if j >= 0 else 0)
        if end < len(chunk):
            self._rest = chunk[end:]
            if len(self._rest) > MAX_EVENT_BYTES:
                raise BadResponse("an SSE event exceeds the gateway's limit")
            chunk = chunk[:end]
            if not chunk:
                return b""
        elif self._rest:
            self._rest = b""
        if not self._started:
            if not chunk.lstrip(b"\r\n").startswith(_SSE_STARTS):
                raise BadResponse("the engine's stream is not SSE")
            self._started = True
        if not self._finished:
            self._finished = _has_finish(chunk)
        self._done = _ends_with_done(chunk)  # [DONE] must be the last event
        if self._done and not self._finished:
            self._cut = True
            chunk = chunk[:chunk.rfind(b"data:")]
        at = chunk.find(_USAGE_KEY)
        if at >= 0:
            chunk = self._usage(chunk, at, cr)
        return chunk

    def finish(self) -> bytes:
        if self._cut or (self._require_finish and not self._finished and _has_done(self._rest)):
            raise BadResponse("the engine's stream ended without a finish_reason")
        rest, self._rest = self._rest, b""
        if not self._done and _has_done(rest.rstrip(b"\r\n")):
            self._done = True
            return rest.rstrip(b"\r\n") + b"\n\n"
        if not self._done:
            raise BadResponse("the engine's stream ended before data: [DONE]")
        return rest

    def _usage(self, chunk: bytes, at: int, cr: bool) -> bytes:
        """Note the usage of events that carry it; drop the usage-only chunk the client did not ask for.

        ``chunk`` holds whole events. Only the events around a ``"prompt_tokens"`` are looked
        at, found with ``bytes.find`` (a regex over every event cost ~40 us per stream).
        """
        kept: list[bytes] = []
        pos = 0  # chunk[:pos] is settled (in kept, or dropped)
        while at >= 0:
            start = _event_start(chunk, pos, at, cr)
            end = _event_end(chunk, at, cr)
            if self._note(chunk[start:end]):
                kept.append(chunk[pos:start])
                pos = end
            at = chunk.find(_USAGE_KEY, end)
        if not pos:
            return chunk
        if len(kept) == 1:
            return kept[0] + chunk[pos:]
        kept.append(chunk[pos:])
        return b"".join(kept)

    def _note(self, event: bytes) -> bool:
        """Note an event's usage; whether to drop it (usage only, and the client did not ask for it)."""
        payload = event.rstrip(b"\r\n")
        if payload.startswith(b"data: ") and b"\n" not in payload:  # one data line: the usual event
            payload = payload[6:]
        else:
            payload = b"\n".join(line[5:].removeprefix(b" ") for line in event.splitlines() if line.startswith(b"data:"))
        try:
            data = orjson.loads(payload)
        except ValueError:
            return False
        if type(data) is not dict or "usage" not in data:
            return False
        prompt, completion = tokens(data["usage"])
        self.call.response_model = data.get("model")
        if prompt is not None or completion is not None:
            self.call.prompt_tokens, self.call.completion_tokens = prompt, completion
        return not self.call.include_usage and not data.get("choices")


def _event_start(chunk: bytes, pos: int, at: int, cr: bool) -> int:
    """The start of the event that holds ``chunk[at]``: after the blank line before it, or ``pos``."""
    lf = chunk.rfind(b"\n\n", pos, at)
    start = lf + 2 if lf >= 0 else pos
    if cr:
        crlf = chunk.rfind(b"\n\r\n", pos, at)
        start = max(start, crlf + 3 if crlf >= 0 else pos)
    return start


def _event_end(chunk: bytes, at: int, cr: bool) -> int:
    """The end of the event that holds ``chunk[at]``: after its blank line (chunk holds whole events)."""
    lf = chunk.find(b"\n\n", at)
    end = lf + 2 if lf >= 0 else len(chunk)
    if cr:
        crlf = chunk.find(b"\n\r\n", at)
        end = min(end, crlf + 3 if crlf >= 0 else len(chunk))
    return end


_DONE_EVENTS = (b"data: [DONE]\n\n", b"data:[DONE]\n\n", b"data: [DONE]\r\n\r\n", b"data:[DONE]\r\n\r\n")


def _ends_with_done(chunk: bytes) -> bool:
    """Whether the last event of ``chunk`` (whole events) is ``data: [DONE]``."""
    for event in _DONE_EVENTS:
        if chunk.endswith(event):
            at = len(chunk) - len(event)
            return at == 0 or chunk[at - 1] == 10  # at an event's start: after "\n"
    return False


_FINISH_KEY = b'"finish_reason"'


def _has_finish(chunk: bytes) -> bool:
    """Whether an event of ``chunk`` sets a ``finish_reason`` other than null."""
    at = chunk.find(_FINISH_KEY)
    while at >= 0:
        value = chunk[at + len(_FINISH_KEY):at + len(_FINISH_KEY) + 16].lstrip(b" \t:")
        if value[:1] == b'"':
            return True
        at = chunk.find(_FINISH_KEY, at + 1)
    return False


def aggregate_stream(kind: str, call: UpstreamCall, raw: bytes) -> bytes:
    """The non-streaming answer (``chat.completion`` / ``text_completion``) of a whole SSE stream.

    Choices are merged by index: text and ``content`` concatenated, ``tool_calls`` merged by
    their index (``arguments`` concatenated), logprob lists joined. Usage is the engine's when
    it sent one, else ``completion_tokens`` counts the chunks that carried text (llama-cpp-python
    sends one per token and no usage) and ``prompt_tokens`` is left out.
    """
    head: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    pieces = 0
    for line in raw.splitlines():
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            continue
        try:
            event = orjson.loads(payload)
        except ValueError:
            raise BadResponse("an event of the engine's stream is not JSON") from None
        if type(event) is not dict or "error" in event:
            raise BadResponse("the engine's stream reported an error")
        if not head:
            head = {k: event.get(k) for k in ("id", "created", "model", "system_fingerprint") if k in event}
        if isinstance(event.get("usage"), dict):
            usage = event["usage"]
        for part in event.get("choices") or ():
            if isinstance(part, dict):
                pieces += _merge_choice(choices.setdefault(int(part.get("index") or 0), {}), part, kind)
    if not choices or any(c.get("finish_reason") is None for c in choices.values()):
        raise BadResponse("the engine's stream ended without a finish_reason")
    if usage is None:
        usage = {"completion_tokens": pieces}
    call.prompt_tokens, call.completion_tokens = tokens(usage)
    call.response_model = head.get("model")
    out = {**head, "object": "chat.completion" if kind == "chat" else "text_completion",
           "choices": [_choice_out(index, c, kind) for index, c in sorted(choices.items())], "usage": usage}
    return orjson.dumps(out)


def _merge_choice(into: dict[str, Any], part: dict[str, Any], kind: str) -> int:
    if part.get("finish_reason") is not None:
        into["finish_reason"] = part["finish_reason"]
    logprobs = part.get("logprobs")
    if isinstance(logprobs, dict):
        held = into.setdefault("logprobs", {})
        for key, value in logprobs.items():
            if isinstance(value, list):
                held.setdefault(key, []).extend(value)
            else:
                held[key] = value
    if kind != "chat":
        text = part.get("text")
        if isinstance(text, str) and text:
            into["text"] = into.get("text", "") + text
            return 1
        return 0
    delta = part.get("delta")
    if not isinstance(delta, dict):
        return 0
    if delta.get("role"):
        into["role"] = delta["role"]
    counted = 0
    content = delta.get("content")
    if isinstance(content, str) and content:
        into["content"] = into.get("content", "") + content
        counted = 1
    for call in delta.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        held = into.setdefault("tool_calls", {}).setdefault(int(call.get("index") or 0), {"function": {}})
        for key in ("id", "type"):
            if call.get(key):
                held[key] = call[key]
        function = call.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                held["function"]["name"] = function["name"]
            if isinstance(function.get("arguments"), str):
                held["function"]["arguments"] = held["function"].get("arguments", "") + function["arguments"]
        counted = 1
    return counted


def _choice_out(index: int, held: dict[str, Any], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"index": index}
    if kind == "chat":
        message: dict[str, Any] = {"role": held.get("role", "assistant"), "content": held.get("content")}
        if held.get("tool_calls"):
            message["tool_calls"] = [held["tool_calls"][i] for i in sorted(held["tool_calls"])]
        out["message"] = message
    else:
        out["text"] = held.get("text", "")
    out["logprobs"] = held.get("logprobs")
    out["finish_reason"] = held["finish_reason"]
    return out


def _has_done(data: bytes) -> bool:
    """Whether a ``data: [DONE]`` line is in ``data`` (which starts at an event's start)."""
    for marker in (b"data: [DONE]", b"data:[DONE]"):
        if data.startswith(marker) or b"\n" + marker in data:
            return True
    return False
