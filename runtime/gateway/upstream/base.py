"""What every engine adapter provides to the proxy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from vilms.compiler.contracts.routes import Route


class UpstreamStreamError(Exception):
    """The engine reported an error inside a stream (e.g. an Ollama ``{"error": ...}`` line)."""


@dataclass(slots=True)
class UpstreamCall:
    """One request to send to an endpoint: ``POST <endpoint><path>`` with ``payload``."""

    path: str
    payload: dict[str, Any]
    stream: bool
    notes: list[str] = field(default_factory=list)  # fields dropped or refused, for x-vilms-trimmed
    include_usage: bool = False  # stream_options.include_usage, for engines that build the stream
    base64_embeddings: bool = False  # encoding_format=base64, for engines that build embeddings


class StreamTranslator(Protocol):
    def feed(self, chunk: bytes) -> bytes:
        """Engine bytes in, client SSE bytes out (possibly empty)."""

    def finish(self) -> bytes:
        """Flush at end of the upstream stream; raise UpstreamStreamError if it ended early."""


class Engine(Protocol):
    name: str

    def prepare(self, kind: str, body: dict[str, Any], alias: Route) -> UpstreamCall:
        """Build the upstream request for ``kind`` (chat, completions, embeddings)."""

    def translate(self, kind: str, call: UpstreamCall, raw: bytes) -> bytes:
        """Turn a successful non-streaming upstream body into the OpenAI JSON body."""

    def stream_translator(self, kind: str, call: UpstreamCall) -> StreamTranslator:
        """A fresh translator for one streaming response."""


class Passthrough:
    """The engine already speaks OpenAI SSE: forward bytes unchanged, chunk by chunk."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def finish(self) -> bytes:
        return b""
