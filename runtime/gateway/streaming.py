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

from .httpserver import Request, StreamResponse

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ClientStalled(Exception):
    """The client accepted no bytes for ``write_timeout``; its connection has been aborted."""


class TimedStream(StreamResponse):
    __slots__ = ("write_timeout",)

    def __init__(self, status: int, headers: dict[str, str], write_timeout: float) -> None:
        super().__init__(status, headers)
        self.write_timeout = write_timeout

    async def prepare(self, request: Request) -> None:
        conn = request._conn
        if conn is not None and conn.writable is not None:  # the connection is already backed up
            await self._wait_writable(conn)
        await super().prepare(request)

    async def write(self, data: bytes) -> None:
        if not data:
            return
        conn = self._conn
        assert conn is not None, "write() before prepare()"
        conn.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
        if conn.writable is not None:
            await self._wait_writable(conn)

    async def write_eof(self) -> None:
        conn = self._conn
        assert conn is not None, "write_eof() before prepare()"
        if self._chunked:
            conn.write(b"0\r\n\r\n")
        if conn.writable is not None:
            await self._wait_writable(conn)

    async def _wait_writable(self, conn) -> None:  # type: ignore[no-untyped-def]
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
