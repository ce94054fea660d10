"""What every engine adapter provides to the proxy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from vilms.compiler.contracts.routes import Route


class UpstreamStreamError(Exception):
    """The engine reported an error inside a stream or body (e.g. an Ollama ``{"error": ...}`` line).

    The message may quote the engine (and so the prompt): never send it to a client or a log.
    """


class BadResponse(UpstreamStreamError):
    """A successful answer that is not what the protocol says: not a JSON object, not SSE,
    a stream that ended before its end marker."""


MAX_EVENT_BYTES = 4 << 20  # the longest SSE event / NDJSON line a translator buffers


def tokens(usage: Any) -> tuple[int | None, int | None]:
    """``(prompt_tokens, completion_tokens)`` of an OpenAI ``usage`` object; None where unknown."""
    if not isinstance(usage, dict):
        return None, None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    prompt = prompt if type(prompt) is int and prompt >= 0 else None
    if completion is None and prompt is not None:
        completion = 0  # embeddings: no completion
    completion = completion if type(completion) is int and completion >= 0 else None
    return prompt, completion


@dataclass(slots=True)
class UpstreamCall:
    """One request to send to an endpoint: ``POST <endpoint><path>`` with ``payload``."""

    path: str
    payload: dict[str, Any]
    stream: bool
    notes: list[str] = field(default_factory=list)  # fields dropped or refused, for x-vilms-trimmed
    include_usage: bool = False  # the client asked for stream_options.include_usage
    aggregate: bool = False  # a non-streaming request sent upstream as a stream, its chunks merged (translate)
    base64_embeddings: bool = False  # encoding_format=base64, for engines that build embeddings
    prompt_tokens: int | None = None  # the engine's usage, set by translate() or the stream translator
    completion_tokens: int | None = None
    response_model: object = None  # the ``model`` the engine answered with, as sent (checked by the metrics)


class StreamTranslator(Protocol):
    def feed(self, chunk: bytes) -> bytes:
        """Engine bytes in, client SSE bytes out (possibly empty)."""

    def finish(self) -> bytes:
        """Flush at end of the upstream stream; raise BadResponse if it ended early."""


class Engine(Protocol):
    name: str

    def prepare(self, kind: str, body: dict[str, Any], alias: Route) -> UpstreamCall:
        """Build the upstream request for ``kind`` (chat, completions, embeddings)."""

    def translate(self, kind: str, call: UpstreamCall, raw: bytes) -> bytes:
        """Turn a successful non-streaming upstream body into the OpenAI JSON body and note its
        usage on ``call``; raise :class:`BadResponse` if it is not a JSON object."""

    def stream_translator(self, kind: str, call: UpstreamCall) -> StreamTranslator:
        """A fresh translator for one streaming response."""
