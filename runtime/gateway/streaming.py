"""The client side of a stream: writes bounded by ``write_timeout_s``, and SSE error events.

:class:`TimedStream` is the server's :class:`StreamResponse` whose waits for the client to
take bytes (the transport's buffer above its high-water mark) last at most
``write_timeout``; past that the client connection is aborted and :class:`ClientStalled`
raised, so the proxy closes the upstream request too (the engine stops generating).
Writes that do not have to wait cost nothing extra.
"""

from __future__ import annotations

import asyncio

import orjson

from .httpserver import StreamResponse

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ClientStalled(Exception):
    """The client accepted no bytes for ``write_timeout``; its connection has been aborted."""


class TimedStream(StreamResponse):
    __slots__ = ("write_timeout",)

    def __init__(self, status: int, headers: dict[str, str], write_timeout: float) -> None:
        super().__init__(status, headers)
        self.write_timeout = write_timeout

    async def _drained(self, conn) -> None:  # type: ignore[no-untyped-def]
        """Wait for the client at most ``write_timeout``; then abort it and raise :class:`ClientStalled`."""
        waiter = conn.writable
        if waiter is None or waiter.done():
            return
        done, _ = await asyncio.wait((waiter,), timeout=self.write_timeout)
        if not done:
            if conn.transport is not None:
                conn.transport.abort()
            raise ClientStalled(f"the client read nothing for {self.write_timeout:g} s")


def error_event(message: str, code: str) -> bytes:
    """An SSE ``data:`` line holding an OpenAI-shaped error."""
    return b"data: " + orjson.dumps({"error": {"message": message, "type": "server_error", "param": None,
                                               "code": code}}) + b"\n\n"
