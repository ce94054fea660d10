#!/usr/bin/env python3
"""CPU per request of the gateway's upstream HTTP client, against its StreamReader predecessor.

    python bench/upstream_client.py [--requests 20000] [--concurrency 16] [--rounds 3] [--aiohttp]

Starts a tiny raw asyncio keep-alive server on 127.0.0.1 in a child process (so its CPU
is not counted) that answers every ``POST`` with a fixed ~300-byte JSON body, then sends
``--requests`` requests through each client: sequentially (concurrency 1) and from
``--concurrency`` tasks at once, over keep-alive connections. It prints the client
process's CPU time (user+sys, ``time.process_time``; the user-mode part in parentheses)
per request for the current client
(``vilms.runtime.gateway.upstream.httpclient``), the baseline (a copy of the previous
StreamReader + ``asyncio.timeout`` implementation, kept below) and, with ``--aiohttp``,
aiohttp's ClientSession; the best of ``--rounds`` alternating rounds, and the ratio.
Uses uvloop when installed (``--no-uvloop`` for plain asyncio).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import resource
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any

from vilms.runtime.gateway.upstream import httpclient
from vilms.runtime.gateway.upstream.httpclient import _split

BODY = json.dumps({"model": "qwen2.5-1.5b", "messages": [{"role": "user", "content": "Say hello in five words."}],
                   "max_tokens": 16}).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
ANSWER = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000,
                     "model": "qwen2.5-1.5b", "choices": [{"index": 0, "message": {"role": "assistant",
                     "content": "Hello there, how are you?"}, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21}}).encode()
RESPONSE = (b"HTTP/1.1 200 OK\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\nserver: uvicorn\r\n"
            b"content-type: application/json\r\ncontent-length: " + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)


# -- the server (child process) --------------------------------------------------------------

class _Answer(asyncio.Protocol):
    """Answers each complete request (head + Content-Length body) with RESPONSE, pipelining-safe."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(buf) < end + 4 + length:
                break
            buf = buf[end + 4 + length:]
            out.append(RESPONSE)
        self.buf = buf
        if out:
            self.transport.write(b"".join(out))  # type: ignore[union-attr]


def _serve(port_out: Any, use_uvloop: bool, lifetime: float) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Answer, "127.0.0.1", 0, backlog=1024)
        port_out.send(server.sockets[0].getsockname()[1])
        await asyncio.sleep(lifetime)  # bounded: the server stops by itself
        server.close()

    _runner(use_uvloop)(main())


def _runner(use_uvloop: bool) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run
    return asyncio.run


# -- the baseline: the previous StreamReader-based client, verbatim but for names -------------

class OldUpstreamError(Exception):
    pass


class OldConnectError(OldUpstreamError):
    pass


class OldReadTimeout(OldUpstreamError):
    pass


class OldDisconnected(OldUpstreamError):
    pass


class _OldConn:
    __slots__ = ("reader", "writer", "idle_since", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.reused = False

    def usable(self, now: float) -> bool:
        return (now - self.idle_since < httpclient.IDLE_TIMEOUT_S and not self.reader.at_eof()
                and not self.writer.transport.is_closing())

    def close(self) -> None:
        self.writer.transport.abort()


class OldResponse:
    __slots__ = ("status", "headers", "_conn", "_timeout", "_length", "_chunked", "_chunk_left", "_done",
                 "_keep_alive", "_raw", "_trailers")

    def __init__(self, conn: _OldConn, status: int, headers: dict[str, str], timeout: float) -> None:
        self.status = status
        self.headers = headers
        self._conn = conn
        self._timeout = timeout
        te = headers.get("transfer-encoding", "").lower()
        self._chunked = "chunked" in te
        length = headers.get("content-length")
        self._length = int(length) if length is not None and not self._chunked else None
        self._chunk_left = 0
        self._raw = b""
        self._trailers = False
        self._keep_alive = headers.get("connection", "").lower() != "close" and (self._chunked or self._length is not None)
        self._done = status in (204, 304) or self._length == 0

    async def read(self) -> bytes:
        if self._length is not None and not self._done:
            data = await self._io(self._conn.reader.readexactly(self._length))
            self._length = 0
            self._done = True
            return data
        parts = []
        while True:
            part = await self.readany()
            if not part:
                return b"".join(parts)
            parts.append(part)

    async def readany(self) -> bytes:
        if self._done:
            return b""
        reader = self._conn.reader
        if self._chunked:
            return await self._next_chunk(reader)
        if self._length is not None:
            data = await self._io(reader.read(min(self._length, 65536)))
            if not data:
                raise OldDisconnected("the upstream closed the connection before the end of the body")
            self._length -= len(data)
            self._done = self._length == 0
            return data
        data = await self._io(reader.read(65536))
        if not data:
            self._done = True
        return data

    async def _next_chunk(self, reader: asyncio.StreamReader) -> bytes:
        while True:
            out = self._decode()
            if out or self._done:
                return out
            data = await self._io(reader.read(65536))
            if not data:
                raise OldDisconnected("the upstream closed the connection inside a chunked body")
            self._raw += data

    def _decode(self) -> bytes:
        raw, pos, out = self._raw, 0, []
        while True:
            if self._chunk_left > 0:
                take = min(self._chunk_left, len(raw) - pos)
                if not take:
                    break
                out.append(raw[pos:pos + take])
                pos += take
                self._chunk_left -= take
                if not self._chunk_left:
                    self._chunk_left = -1
                continue
            end = raw.find(b"\r\n", pos)
            if end < 0:
                if len(raw) - pos > 4096:
                    raise OldDisconnected("malformed chunked encoding from upstream")
                break
            line = raw[pos:end]
            pos = end + 2
            if self._chunk_left == -1:
                if line:
                    raise OldDisconnected("malformed chunked encoding from upstream")
                self._chunk_left = 0
            elif self._trailers:
                if not line:
                    self._done = True
                    break
            else:
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise OldDisconnected("malformed chunked encoding from upstream") from None
                if size:
                    self._chunk_left = size
                else:
                    self._trailers = True
        self._raw = raw[pos:]
        return b"".join(out)

    async def _io(self, awaitable):  # type: ignore[no-untyped-def]
        try:
            async with asyncio.timeout(self._timeout):
                return await awaitable
        except TimeoutError:
            raise OldReadTimeout(f"no response bytes within {self._timeout:g} s") from None
        except asyncio.IncompleteReadError:
            raise OldDisconnected("the upstream closed the connection mid-response") from None
        except asyncio.LimitOverrunError:
            raise OldDisconnected("the upstream sent an oversized header or chunk line") from None
        except (ConnectionError, OSError) as exc:
            raise OldDisconnected(f"connection error: {exc}") from None

    @property
    def reusable(self) -> bool:
        return self._done and self._keep_alive


class OldPool:
    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[_OldConn]] = {}
        self._ssl: ssl.SSLContext | None = None

    @asynccontextmanager
    async def post(self, url: str, body: bytes, headers: Mapping[str, str], connect_timeout: float,
                   read_timeout: float) -> AsyncIterator[OldResponse]:
        origin, target, host_header = _split(url)
        head = _request_head(target, host_header, headers, len(body)) + body
        conn = await self._checkout(origin, connect_timeout)
        try:
            response = await self._exchange(conn, head, read_timeout)
        except OldDisconnected:
            conn.close()
            if not conn.reused:
                raise
            conn = await self._connect(origin, connect_timeout)
            try:
                response = await self._exchange(conn, head, read_timeout)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        released = False
        try:
            yield response
            if response.reusable:
                self._checkin(origin, conn)
                released = True
        finally:
            if not released:
                conn.close()

    async def _exchange(self, conn: _OldConn, head: bytes, read_timeout: float) -> OldResponse:
        reader = conn.reader
        try:
            conn.writer.write(head)
            async with asyncio.timeout(read_timeout):
                while True:
                    raw = await reader.readuntil(b"\r\n\r\n")
                    status, headers = _old_parse_head(raw)
                    if status >= 200 or status == 101:
                        break
        except TimeoutError:
            conn.close()
            raise OldReadTimeout(f"no response within {read_timeout:g} s") from None
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            raise OldDisconnected(f"the upstream closed the connection before answering ({type(exc).__name__})") from None
        except asyncio.LimitOverrunError:
            raise OldDisconnected("the upstream sent an oversized response head") from None
        return OldResponse(conn, status, headers, read_timeout)

    async def _checkout(self, origin: tuple[str, str, int], connect_timeout: float) -> _OldConn:
        idle = self._idle.get(origin)
        if idle:
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if conn.usable(now):
                    conn.reused = True
                    return conn
                conn.close()
        return await self._connect(origin, connect_timeout)

    def _checkin(self, origin: tuple[str, str, int], conn: _OldConn) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= httpclient.MAX_IDLE_PER_HOST:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connect(self, origin: tuple[str, str, int], connect_timeout: float) -> _OldConn:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(host, port, ssl=context, limit=httpclient.MAX_HEAD_BYTES)
        except TimeoutError:
            raise OldConnectError(f"connect timeout after {connect_timeout:g} s") from None
        except OSError as exc:
            raise OldConnectError(exc.strerror or str(exc)) from None
        return _OldConn(reader, writer)

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def _request_head(target: str, host: str, headers: Mapping[str, str], length: int) -> bytes:
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {length}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _old_parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    text = raw.decode("latin-1")
    status_line, _, rest = text.partition("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise OldDisconnected(f"not an HTTP/1.x response: {status_line[:80]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise OldDisconnected(f"bad status line: {status_line[:80]!r}") from None
    headers: dict[str, str] = {}
    for line in rest.split("\r\n"):
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if parts[0] == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
        headers["connection"] = "close"
    return status, headers


# -- aiohttp (optional third column) -----------------------------------------------------------

class AiohttpPool:
    """aiohttp's ClientSession behind the same ``post`` shape."""

    def __init__(self) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    @asynccontextmanager
    async def post(self, url: str, body: bytes, headers: Mapping[str, str], connect_timeout: float,
                   read_timeout: float) -> AsyncIterator[Any]:
        timeout = self._aiohttp.ClientTimeout(connect=connect_timeout, sock_read=read_timeout)
        async with self._session.post(url, data=body, headers=headers, timeout=timeout) as resp:
            yield resp

    async def aclose(self) -> None:
        await self._session.close()


# -- the measurement ---------------------------------------------------------------------------

async def _drive(pool: Any, url: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs per request, user-mode part of it) for ``requests`` requests from ``concurrency`` tasks."""
    per_task = requests // concurrency

    async def worker() -> None:
        for _ in range(per_task):
            async with pool.post(url, BODY, HEADERS, 2.0, 10.0) as resp:
                data = await resp.read()
            if resp.status != 200 or len(data) != len(ANSWER):
                raise SystemExit(f"bad response: {resp.status} {data[:80]!r}")

    gc.collect()
    user, cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime, time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, user = time.process_time() - cpu, resource.getrusage(resource.RUSAGE_SELF).ru_utime - user
    done = per_task * concurrency
    return cpu / done * 1e6, user / done * 1e6


async def _bench(url: str, requests: int, concurrency: int, rounds: int,
                 with_aiohttp: bool) -> dict[str, dict[int, tuple[float, float]]]:
    makers: dict[str, Callable[[], Any]] = {"old": OldPool, "new": httpclient.Pool}
    if with_aiohttp:
        makers["aiohttp"] = AiohttpPool
    best: dict[str, dict[int, tuple[float, float]]] = {name: {} for name in makers}
    for _ in range(rounds):
        for name, make in makers.items():
            pool = make()
            await _drive(pool, url, min(2000, requests), concurrency)  # warm up: connections, caches
            for conc in (1, concurrency):
                result = await _drive(pool, url, requests, conc)
                best[name][conc] = min(best[name].get(conc, result), result)
            if hasattr(pool, "aclose"):
                await pool.aclose()
            else:
                pool.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--aiohttp", action="store_true", help="also measure aiohttp's ClientSession")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    use_uvloop = not args.no_uvloop
    loop_name = "uvloop" if use_uvloop and _runner(True) is not asyncio.run else "asyncio"

    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=_serve, args=(send, use_uvloop, 600.0), daemon=True)
    server.start()
    try:
        if not receive.poll(30):
            raise SystemExit("the benchmark server did not start")
        url = f"http://127.0.0.1:{receive.recv()}/v1/chat/completions"
        best = _runner(use_uvloop)(_bench(url, args.requests, args.concurrency, args.rounds, args.aiohttp))
    finally:
        server.terminate()
        server.join(10)

    print(f"upstream client CPU (user+sys) per keep-alive POST, {len(RESPONSE)}-byte response, {loop_name}, "
          f"{args.requests} requests, best of {args.rounds} rounds; (user-mode part)")
    for conc in (1, args.concurrency):
        cells = "  ".join(f"{name} {best[name][conc][0]:6.1f} µs ({best[name][conc][1]:5.1f})" for name in best)
        ratio = best["old"][conc][0] / best["new"][conc][0]
        print(f"  concurrency {conc:3d}: {cells}  ->  old/new {ratio:.2f}x")
    print("  (at concurrency 1 every request also pays the kernel's sleep and wake-up, the same for any client)")


if __name__ == "__main__":
    main()
