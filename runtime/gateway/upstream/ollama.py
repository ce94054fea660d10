"""The Ollama engine: native ``/api/*`` endpoints, translated to and from OpenAI shapes."""

from __future__ import annotations

from typing import Any

from vilms.compiler.contracts.routes import Route

from . import ollama_request, ollama_response
from .base import UpstreamCall

PATHS = {"chat": "/api/chat", "completions": "/api/generate", "embeddings": "/api/embed"}


class OllamaEngine:
    __slots__ = ()
    name = "ollama"

    def prepare(self, kind: str, body: dict[str, Any], alias: Route) -> UpstreamCall:
        notes: list[str] = []
        if kind == "chat":
            payload = ollama_request.chat_request(body, alias, notes)
        elif kind == "completions":
            payload = ollama_request.generate_request(body, alias, notes)
        else:
            payload = ollama_request.embed_request(body, alias, notes)
            return UpstreamCall(path=PATHS[kind], payload=payload, stream=False, notes=notes,
                                base64_embeddings=body.get("encoding_format") == "base64")
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return UpstreamCall(path=PATHS[kind], payload=payload, stream=payload["stream"], notes=notes,
                            include_usage=include_usage)

    def translate(self, kind: str, call: UpstreamCall, raw: bytes) -> bytes:
        if kind == "chat":
            return ollama_response.chat_completion(raw, call)
        if kind == "completions":
            return ollama_response.text_completion(raw, call)
        return ollama_response.embeddings(raw, call)

    def stream_translator(self, kind: str, call: UpstreamCall) -> ollama_response.NDJSONToSSE:
        return ollama_response.NDJSONToSSE(chat=kind == "chat", call=call)
