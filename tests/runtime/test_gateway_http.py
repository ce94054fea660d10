"""The lean upstream HTTP/1.1 client: framing, keep-alive reuse, stale connections, timeouts."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from gateway_harness import run

from vilms.runtime.gateway.upstream import httpclient
from vilms.runtime.gateway.upstream.httpclient import ConnectError, Disconnected, Pool, ReadTimeout, _Conn

Script = bytes | list[bytes | float]  # a response: bytes written in pieces, or explicit writes and pauses (s)


class RawServer:
    """A TCP server that answers each request with canned bytes, written in pieces."""

    def __init__(self, responses: list[Script], piece: int = 1, close_after: bool = False) -> None:
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
                if isinstance(data, list):  # a script: write each bytes item whole, sleep on a float
                    for step in data:
                        if isinstance(step, float):
                            await asyncio.sleep(step)
                        else:
                            writer.write(step)
                            await writer.drain()
                else:
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


# -- framing, fed to the protocol directly: every split point, deterministically ------------------

class FakeTransport:
    """Just enough of a transport for :class:`_Conn`: records writes, pauses and aborts."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


async def exchange_fed(pieces: list[bytes], requests: int = 1) -> list[tuple[int, dict[str, str], list[bytes], bool]]:
    """Run ``requests`` exchanges on one connection while ``pieces`` arrive one event-loop turn apart."""
    conn = _Conn(asyncio.get_running_loop())
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]

    async def client() -> list[tuple[int, dict[str, str], list[bytes], bool]]:
        results = []
        for _ in range(requests):
            response = await conn.exchange(b"POST / HTTP/1.1\r\n\r\n", 1.0)
            body = []
            while piece := await response.readany():
                body.append(piece)
            results.append((response.status, response.headers, body, response.reusable))
            conn.release()
        return results

    task = asyncio.create_task(client())
    await asyncio.sleep(0)
    for piece in pieces:
        conn.data_received(piece)
        for _ in range(3):
            await asyncio.sleep(0)  # let the client take what arrived (and send its next request)
    return await asyncio.wait_for(task, 2)


SIZED_BODY = b'{"id": "x", "choices": [{"message": {"content": "hi"}}]}'
SIZED_FULL = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(SIZED_BODY)).encode() + b"\r\n\r\n" + SIZED_BODY)
CHUNKED_EXT = (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Head: yes\r\n\r\n"
               b"4;name=value\r\ndata\r\n3;a=1;b=\"q;x\"\r\n: 1\r\n0;last\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n")


@pytest.mark.parametrize("raw, status, body, header", [
    (SIZED_FULL, 200, SIZED_BODY, ("content-type", "application/json")),
    (CHUNKED_EXT, 201, b"data: 1", ("x-head", "yes")),
], ids=["content-length", "chunked"])
def test_body_split_at_every_byte_boundary(raw, status, body, header):
    async def scenario():
        outcomes = []
        for cut in range(1, len(raw)):
            outcomes.append((cut, await exchange_fed([raw[:cut], raw[cut:]])))
        return outcomes

    for cut, [(got_status, headers, pieces, reusable)] in run(scenario()):
        assert (got_status, b"".join(pieces), reusable) == (status, body, True), f"split at {cut}"
        assert headers[header[0]] == header[1], f"split at {cut}"
        assert "x-trailer" not in headers  # trailers are not headers


def test_byte_by_byte_then_next_response_on_the_same_connection():
    async def scenario():
        raw = CHUNKED_EXT + SIZED_FULL
        return await exchange_fed([raw[i:i + 1] for i in range(len(raw))], requests=2)

    first, second = run(scenario())
    assert first[0] == 201 and b"".join(first[2]) == b"data: 1" and len(first[2]) > 1  # streamed as it came
    assert second[0] == 200 and b"".join(second[2]) == SIZED_BODY and second[3]


def test_chunked_with_trailers_and_extensions_over_a_socket_then_reused():
    async def scenario():
        server = RawServer([[CHUNKED_EXT[:40], 0.01, CHUNKED_EXT[40:]], SIZED_FULL])
        url = await server.start()
        pool = Pool()
        async with pool.post(url + "/x", b"{}", {}, 1.0, 1.0) as resp:
            first = (resp.status, resp.headers, await resp.read(), resp.reusable)
        second = await collect(pool, url)
        pool.close()
        await server.stop()
        return server, first, second

    server, first, second = run(scenario())
    status, headers, body, reusable = first
    assert (status, body, reusable) == (201, b"data: 1", True)
    assert headers["transfer-encoding"] == "chunked" and "x-trailer" not in headers
    assert second[1] == SIZED_BODY and server.connections == 1


def test_100_continue_before_the_real_response_is_skipped():
    interim = b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
    async def scenario():
        server = RawServer([
            interim + SIZED_FULL,  # in one write: the final response follows the interim one in the same read
            [interim, 0.02, b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", 0.02, SIZED_FULL],
        ])
        url = await server.start()
        pool = Pool()
        results = []
        for _ in range(2):
            async with pool.post(url + "/x", b"{}", {}, 1.0, 1.0) as resp:
                results.append((resp.status, resp.headers, await resp.read()))
        pool.close()
        await server.stop()
        return server, results

    server, results = run(scenario())
    for status, headers, body in results:
        assert (status, body) == (200, SIZED_BODY)
        assert headers["content-type"] == "application/json" and "x-interim" not in headers and "link" not in headers
    assert server.connections == 1  # still reused


def test_unsolicited_bytes_after_a_response_do_not_corrupt_the_next_one():
    bogus = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nWRONG"
    async def scenario():
        # 1: a response and, in the same write, bytes nobody asked for; 2: bytes arriving while idle in the pool.
        # (Stray bytes that trickle in after the next request went out can't be told from its response.)
        server = RawServer([[SIZED + bogus], [SIZED, 0.05, bogus], SIZED, SIZED])
        url = await server.start()
        pool = Pool()
        results = [await collect(pool, url)]
        results.append(await collect(pool, url))
        await asyncio.sleep(0.1)  # the second connection's stray bytes arrive while it is idle
        results.append(await collect(pool, url))
        results.append(await collect(pool, url))
        pool.close()
        await server.stop()
        return server, results

    server, results = run(scenario())
    assert [r[1] for r in results] == [b"hello sized"] * 4
    assert server.connections == 3  # both connections that carried stray bytes were dropped, not reused


def test_read_timeout_mid_body_after_the_bytes_that_came():
    async def scenario():
        stalled = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part"
        server = RawServer([[stalled, 5.0]])
        url = await server.start()
        pool = Pool()
        got = []
        started = time.monotonic()
        try:
            async with pool.post(url + "/x", b"{}", {}, 1.0, 0.2) as resp:
                got.append(await resp.readany())
                with pytest.raises(ReadTimeout):
                    await resp.readany()
            return got, time.monotonic() - started
        finally:
            pool.close()
            await server.stop()

    got, elapsed = run(scenario())
    assert got == [b"first part"] and 0.15 < elapsed < 2.0


def test_read_timeout_bounds_each_wait_not_the_whole_stream():
    async def scenario():
        script: list[bytes | float] = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
        for i in range(8):
            script += [0.1, b"1\r\n%d\r\n" % i]
        server = RawServer([script + [b"0\r\n\r\n"]])
        url = await server.start()
        pool = Pool()
        pieces = []
        async with pool.post(url + "/x", b"{}", {}, 1.0, 0.5) as resp:
            while piece := await resp.readany():
                pieces.append(piece)
        pool.close()
        await server.stop()
        return pieces

    assert b"".join(run(scenario())) == b"01234567"  # ~0.8 s in all, with a 0.5 s read timeout


def test_flow_control_bounds_buffered_body_and_delivers_it_in_pieces():
    size = 16 * 1024 * 1024
    bound = httpclient._HIGH_WATER + 1024 * 1024  # high water plus what a few socket reads may add

    async def scenario():
        block = b"x" * (1024 * 1024)
        server = RawServer([[b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size] + [block] * 16, SIZED])
        url = await server.start()
        pool = Pool()
        sizes, peak, paused = [], 0, False
        async with pool.post(url + "/x", b"{}", {}, 1.0, 2.0) as resp:
            conn = resp._conn
            while True:
                await asyncio.sleep(0.002)  # a slow consumer: the server could outrun it by far
                peak = max(peak, conn._buffered)
                paused = paused or conn._paused
                piece = await resp.readany()
                if not piece:
                    break
                sizes.append(len(piece))
            reusable = resp.reusable
        pool.close()
        await server.stop()
        return sizes, peak, paused, reusable

    sizes, peak, paused, reusable = run(scenario())
    assert sum(sizes) == size and len(sizes) > 10
    assert paused and peak <= bound and max(sizes) <= bound
    assert reusable


def test_cancelled_inside_the_context_aborts_the_connection():
    async def scenario():
        server_saw: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ntoken\r\n")
            try:
                while True:  # the engine keeps generating until its client goes away
                    data = await reader.read(65536)
                    if not data:
                        server_saw.set_result("eof")
                        return
            except ConnectionError:
                server_saw.set_result("reset")

        server = await asyncio.start_server(endless, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
        pool = Pool()
        entered = asyncio.Event()

        async def handler() -> None:
            async with pool.post(url, b"{}", {}, 1.0, 30.0) as resp:
                assert await resp.readany() == b"token"
                entered.set()
                await resp.readany()  # waits for the next token: cancelled here

        task = asyncio.create_task(handler())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        saw = await asyncio.wait_for(server_saw, 2)
        idle = sum(len(conns) for conns in pool._idle.values())
        pool.close()
        server.close()
        return saw, idle

    saw, idle = run(scenario())
    assert saw in ("eof", "reset") and idle == 0


@pytest.mark.parametrize("raw", [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 abc OK\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (httpclient.MAX_HEAD_BYTES + 10),  # oversized head, never ends
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
], ids=["not-http", "bad-status", "bad-chunk", "oversized-head", "upgrade"])
def test_malformed_or_oversized_responses_raise_disconnected(raw):
    async def scenario():
        server = RawServer([[raw, 2.0]])
        url = await server.start()
        pool = Pool()
        try:
            async with pool.post(url + "/x", b"{}", {}, 1.0, 1.0) as resp:
                await resp.read()
        finally:
            pool.close()
            await server.stop()

    with pytest.raises(Disconnected):
        run(scenario())


def test_http10_and_connection_close_are_not_reused_204_is():
    async def scenario():
        server = RawServer([
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            SIZED,
        ])
        url = await server.start()
        pool = Pool()
        results = []
        for _ in range(5):
            async with pool.post(url + "/x", b"{}", {}, 1.0, 1.0) as resp:
                results.append((resp.status, await resp.read(), resp.reusable))
        pool.close()
        await server.stop()
        return server, results

    server, results = run(scenario())
    assert results == [(200, b"ok", False), (200, b"ok", False), (204, b"", True), (200, b"ok", True),
                       (200, b"hello sized", True)]
    assert server.connections == 3


def test_idle_connections_past_the_idle_timeout_are_not_reused(monkeypatch):
    monkeypatch.setattr(httpclient, "IDLE_TIMEOUT_S", 0.05)

    async def scenario():
        server = RawServer([SIZED, SIZED, SIZED])
        url = await server.start()
        pool = Pool()
        await collect(pool, url)
        await collect(pool, url)  # quick: reused
        await asyncio.sleep(0.1)
        await collect(pool, url)  # idle too long: a fresh connection
        pool.close()
        await server.stop()
        return server

    assert run(scenario()).connections == 2


def test_https_through_an_ssl_context(tmp_path: Path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)

    async def scenario():
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        raw = RawServer([SIZED, CHUNKED])
        server = await asyncio.start_server(raw._serve, "127.0.0.1", 0, ssl=server_ctx)
        url = f"https://localhost:{server.sockets[0].getsockname()[1]}"
        pool = Pool()
        pool._ssl = ssl.create_default_context(cafile=str(cert))
        results = [await collect(pool, url), await collect(pool, url)]
        pool.close()
        server.close()
        return raw, results

    raw, results = run(scenario())
    assert [r[1] for r in results] == [b"hello sized", b"hello chunked world"] and raw.connections == 1
