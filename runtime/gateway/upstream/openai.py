"""Engines that already speak the OpenAI API: vLLM and the llama.cpp (llama-cpp-python) server.

The request is forwarded with ``model`` set to the alias's upstream model (vLLM: served
name or LoRA adapter name; llama.cpp: the ``model_alias`` of its config). Responses and
SSE streams pass through byte for byte.
"""

from __future__ import annotations

from typing import Any

from vilms.compiler.contracts.routes import Route

from .base import Passthrough, UpstreamCall

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}
_PASSTHROUGH = Passthrough()


class OpenAIEngine:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def prepare(self, kind: str, body: dict[str, Any], alias: Route) -> UpstreamCall:
        body["model"] = alias.model
        if self.name == "llamacpp" and "max_completion_tokens" in body:
            # llama-cpp-python's server only knows max_tokens.
            value = body.pop("max_completion_tokens")
            body["max_tokens"] = min(value, body.get("max_tokens", value))
        return UpstreamCall(path=PATHS[kind], payload=body, stream=bool(body.get("stream")))

    def translate(self, kind: str, call: UpstreamCall, raw: bytes) -> bytes:
        return raw

    def stream_translator(self, kind: str, call: UpstreamCall) -> Passthrough:
        return _PASSTHROUGH
