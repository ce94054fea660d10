"""Raw-socket HTTP/1.1 for the gateway tests: read one response, build a request, measure RSS."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Iterable


async def read_response(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body (Content-Length, chunked or until close)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout)
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            if not size:
                break
            body += data[:-2]
    else:
        body = await asyncio.wait_for(reader.read(), timeout)
    return status, headers, body


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Sender(asyncio.Protocol):
    """A client connection that notes how much it had sent when the first byte of the answer came."""

    def __init__(self) -> None:
        self.sent = 0
        self.sent_at_answer: int | None = None
        self.received = bytearray()
        self.gone = asyncio.get_running_loop().create_future()
        self.writable: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.sent_at_answer is None:
            self.sent_at_answer = self.sent
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.gone.done():
            self.gone.set_result(None)
        self.resume_writing()

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)


async def stream_until_answered(port: int, pieces: Iterable[bytes],
                                on_piece: Callable[[], None] | None = None) -> tuple[int | None, int, bytes]:
    """Send ``pieces``, one per turn of the event loop, until the server answers, the connection ends or
    the pieces run out. Returns the status (None: no answer), the bytes sent when the first byte of the
    answer arrived (or in all) and the answer's body."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(_Sender, "127.0.0.1", port)
    for piece in pieces:
        if client.received or client.gone.done():
            break
        transport.write(piece)
        client.sent += len(piece)
        if client.writable is not None:
            await client.writable
        await asyncio.sleep(0)
        if on_piece is not None:
            on_piece()
    reader = asyncio.StreamReader()
    try:
        await asyncio.wait_for(asyncio.shield(client.gone), 1.0)  # the server closes after its answer
    except asyncio.TimeoutError:
        pass
    transport.abort()
    reader.feed_data(bytes(client.received))
    reader.feed_eof()
    try:
        status, _, body = await read_response(reader, timeout=1.0)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
        return None, client.sent, b""
    return status, client.sent if client.sent_at_answer is None else client.sent_at_answer, body


def endless(prefix: bytes, piece: bytes, cap: int) -> Iterable[bytes]:
    """``prefix``, then ``piece`` repeated until ``cap`` bytes in all."""
    return itertools.chain([prefix], itertools.repeat(piece, (cap - len(prefix)) // len(piece)))


def sliced(data: bytes, size: int) -> Iterable[bytes]:
    return (data[at:at + size] for at in range(0, len(data), size))
