"""The lean upstream HTTP/1.1 client: framing, keep-alive reuse, stale connections, timeouts."""

from __future__ import annotations

import asyncio

import pytest
from gateway_harness import run

from vilms.runtime.gateway.upstream.httpclient import ConnectError, Disconnected, Pool, ReadTimeout, _Conn


class RawServer:
    """A TCP server that answers each request with canned bytes, written in pieces."""

    def __init__(self, responses: list[bytes], piece: int = 1, close_after: bool = False) -> None:
        self.responses = responses
        self.piece = piece
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.responses:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                data = self.responses.pop(0)
                for i in range(0, len(data), self.piece):
                    writer.write(data[i:i + self.piece])
                    await writer.drain()
                    await asyncio.sleep(0)
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
           b"5\r\nhello\r\n1;ext=1\r\n \r\nb\r\nchunked wor\r\n2\r\nld\r\n0\r\nX-Trailer: 1\r\n\r\n")
SIZED = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello sized"


async def collect(pool: Pool, url: str) -> tuple[int, bytes, list[bytes]]:
    pieces = []
    async with pool.post(url + "/v1/x", b'{"a": 1}', {"Content-Type": "application/json"}, 1.0, 1.0) as resp:
        while True:
            piece = await resp.readany()
            if not piece:
                break
            pieces.append(piece)
    return resp.status, b"".join(pieces), pieces


def test_chunked_body_split_byte_by_byte_is_decoded_and_connection_reused():
    async def scenario():
        server = RawServer([CHUNKED, SIZED], piece=1)
        url = await server.start()
        pool = Pool()
        first = await collect(pool, url)
        second = await collect(pool, url)
        pool.close()
        await server.stop()
        return server, first, second

    server, first, second = run(scenario())
    assert first[0] == 200 and first[1] == b"hello chunked world"
    assert len(first[2]) > 1  # delivered piece by piece, not buffered whole
    assert second[1] == b"hello sized"
    assert server.connections == 1  # keep-alive reuse
    assert server.requests[0].startswith(b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert server.requests[0].endswith(b'\r\n\r\n{"a": 1}')


def test_close_delimited_body_and_no_reuse():
    async def scenario():
        server = RawServer([b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close"], close_after=True, piece=4)
        url = await server.start()
        pool = Pool()
        result = await collect(pool, url)
        pool.close()
        await server.stop()
        return result

    assert run(scenario())[1] == b"until close"


def test_stale_keepalive_connection_is_retried_once_on_a_fresh_one(monkeypatch):
    # The pool believes every idle connection is fine, as in the race where the server's
    # close arrives just after the connection was taken from the pool.
    monkeypatch.setattr(_Conn, "usable", lambda self, now: True)

    async def scenario():
        server = RawServer([SIZED], close_after=True)  # serves one response per connection, then closes
        url = await server.start()
        pool = Pool()
        await collect(pool, url)
        server.responses.append(SIZED)
        await asyncio.sleep(0.05)  # the server has closed the pooled connection by now
        result = await collect(pool, url)
        pool.close()
        await server.stop()
        return server, result

    server, result = run(scenario())
    assert result[1] == b"hello sized" and server.connections == 2


def test_truncated_sized_body_raises_disconnected():
    async def scenario():
        server = RawServer([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort"], close_after=True)
        url = await server.start()
        pool = Pool()
        try:
            await collect(pool, url)
        finally:
            pool.close()
            await server.stop()

    with pytest.raises(Disconnected):
        run(scenario())


def test_refused_and_silent_servers():
    async def scenario():
        pool = Pool()
        gone = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        gone_url = f"http://127.0.0.1:{gone.sockets[0].getsockname()[1]}"
        gone.close()
        await gone.wait_closed()  # nothing listens there any more
        with pytest.raises(ConnectError):
            await collect(pool, gone_url)

        async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)

        silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        silent_url = f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}"
        with pytest.raises(ReadTimeout):
            async with pool.post(silent_url + "/", b"{}", {}, 1.0, 0.2):
                pass
        silent.close()
        pool.close()

    run(scenario())
