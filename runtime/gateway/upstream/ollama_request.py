"""OpenAI request bodies → Ollama native API requests (``/api/chat``, ``/api/generate``, ``/api/embed``).

The native API is used because Ollama's ``/v1`` ignores the context size: here
``options.num_ctx`` is always the alias's context. OpenAI sampling fields map onto
``options``; fields Ollama cannot honour are dropped and named in the notes (which the
gateway reports in ``x-vilms-trimmed``), except ``n > 1``, which is refused with a 400
because silently answering one choice would be wrong.
"""

from __future__ import annotations

import json
from typing import Any

from vilms.compiler.contracts.routes import Route

from ..apierrors import ApiError

# OpenAI (or common extension) name -> Ollama option name.
OPTION_NAMES = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "repetition_penalty": "repeat_penalty",
}
# Fields consumed by the translation itself (never reported as dropped).
_CHAT_HANDLED = {"model", "messages", "stream", "stream_options", "stop", "max_tokens", "max_completion_tokens",
                 "response_format", "tools", "tool_choice", "n", *OPTION_NAMES}
_GENERATE_HANDLED = {"model", "prompt", "stream", "stream_options", "stop", "max_tokens", "suffix", "n", *OPTION_NAMES}
_EMBED_HANDLED = {"model", "input", "dimensions", "encoding_format"}


def chat_request(body: dict[str, Any], alias: Route, notes: list[str]) -> dict[str, Any]:
    _refuse_n(body)
    payload: dict[str, Any] = {
        "model": alias.model,
        "messages": _messages(body.get("messages") or []),
        "stream": bool(body.get("stream")),
        "options": _options(body, alias),
    }
    fmt = _format(body.get("response_format"))
    if fmt is not None:
        payload["format"] = fmt
    tools = body.get("tools")
    if tools:
        if body.get("tool_choice") == "none":
            notes.append("dropped=tools")  # the client asked for no tool use
        else:
            payload["tools"] = tools
    if "tool_choice" in body and body["tool_choice"] not in (None, "auto", "none"):
        notes.append("dropped=tool_choice")
    _note_dropped(body, _CHAT_HANDLED, notes)
    return payload


def generate_request(body: dict[str, Any], alias: Route, notes: list[str]) -> dict[str, Any]:
    _refuse_n(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise ApiError(400, "This alias is served by Ollama, which takes one text prompt per request.",
                           param="prompt", code="unsupported_value")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "'prompt' must be a string.", param="prompt")
    payload: dict[str, Any] = {
        "model": alias.model,
        "prompt": prompt,
        "stream": bool(body.get("stream")),
        "options": _options(body, alias),
    }
    if isinstance(body.get("suffix"), str):
        payload["suffix"] = body["suffix"]
    _note_dropped(body, _GENERATE_HANDLED, notes)
    return payload


def embed_request(body: dict[str, Any], alias: Route, notes: list[str]) -> dict[str, Any]:
    value = body.get("input")
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise ApiError(400, "This alias is served by Ollama, which embeds text only (no token arrays).",
                       param="input", code="unsupported_value")
    payload: dict[str, Any] = {"model": alias.model, "input": value, "truncate": False,
                               "options": {"num_ctx": alias.context}}
    if isinstance(body.get("dimensions"), int):
        payload["dimensions"] = body["dimensions"]
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise ApiError(400, "'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    _note_dropped(body, _EMBED_HANDLED, notes)
    return payload


def _refuse_n(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n not in (None, 1):
        raise ApiError(400, "This alias is served by Ollama, which returns one choice per request; send n=1.",
                       param="n", code="unsupported_value")


def _note_dropped(body: dict[str, Any], handled: set[str], notes: list[str]) -> None:
    dropped = sorted(k for k in body if k not in handled)
    if dropped:
        notes.append("dropped=" + "|".join(dropped))


def _options(body: dict[str, Any], alias: Route) -> dict[str, Any]:
    options: dict[str, Any] = {"num_ctx": alias.context}
    for name, option in OPTION_NAMES.items():
        value = body.get(name)
        if value is not None:
            options[option] = value
    stop = body.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list) and stop:
        options["stop"] = stop
    limits = [v for v in (body.get("max_tokens"), body.get("max_completion_tokens")) if isinstance(v, int)]
    if limits:
        options["num_predict"] = min(limits)
    return options


def _format(response_format: Any) -> Any:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else "json"
    return None


def _messages(messages: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ApiError(400, f"messages[{index}] must be an object.", param="messages")
        role = message.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise ApiError(400, f"messages[{index}].role {role!r} is not supported.", param="messages")
        text, images = _content(message.get("content"), index)
        converted: dict[str, Any] = {"role": role, "content": text}
        if images:
            converted["images"] = images
        calls = message.get("tool_calls")
        if role == "assistant" and isinstance(calls, list) and calls:
            converted["tool_calls"] = [_tool_call(call, tool_names) for call in calls]
        if role == "tool":
            name = tool_names.get(message.get("tool_call_id") or "") or message.get("name")
            if name:
                converted["tool_name"] = name
        out.append(converted)
    return out


def _content(content: Any, index: int) -> tuple[str, list[str]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise ApiError(400, f"messages[{index}].content must be a string or a list of parts.", param="messages")
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "") if isinstance(part.get("image_url"), dict) \
                else str(part.get("image_url", ""))
            if not url.startswith("data:") or "," not in url:
                raise ApiError(400, "Ollama takes images as base64 data: URLs only.", param="messages",
                               code="unsupported_value")
            images.append(url.split(",", 1)[1])
    return "\n".join(texts), images


def _tool_call(call: Any, names: dict[str, str]) -> dict[str, Any]:
    function = call.get("function", {}) if isinstance(call, dict) else {}
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments else {}
        except ValueError:
            raise ApiError(400, "tool_calls[].function.arguments must be a JSON object.",
                           param="messages") from None
    if isinstance(call, dict) and call.get("id") and function.get("name"):
        names[call["id"]] = function["name"]
    return {"function": {"name": function.get("name", ""), "arguments": arguments}}
