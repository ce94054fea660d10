"""The gateway's HTTP/1.1 server, spoken to over raw sockets: framing, limits, timeouts, shutdown."""

from __future__ import annotations

import asyncio
import gc
import json
import time

import pytest
from gateway_harness import run
from raw_http import endless, post, read_response, stream_until_answered

from vilms.runtime.gateway import httpserver
from vilms.runtime.gateway.httpserver import Request, Response, Router, Server, StreamResponse, json_response


def _errors(status: int, message: str, code: str) -> Response:
    return json_response({"error": {"message": message, "code": code}}, status)


class Harness:
    def __init__(self, limit: int = 1024) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = 0
        self.written = 0
        router = Router()
        router.add("POST", "/echo", self.echo)
        router.add("POST", "/slow", self.slow)
        router.add("GET", "/stream", self.stream)
        router.add("GET", "/flood", self.flood)
        router.add("GET", "/boom", self.boom)
        router.add("GET", "/stream-fails", self.stream_fails)
        router.add_prefix("GET", "/items/", self.item)
        self.server = Server(router, _errors, lambda: limit)

    async def echo(self, request: Request) -> Response:
        return json_response({"method": request.method, "query": request.query, "body": request.body.decode(),
                              "agent": request.headers.get("user-agent")})

    async def slow(self, request: Request) -> Response:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return Response(b"done", content_type="text/plain")

    async def stream(self, request: Request) -> StreamResponse:
        response = StreamResponse(200, {"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in (b"data: 1\n\n", b"data: 2\n\n"):
            await response.write(piece)
        await response.write_eof()
        return response

    async def flood(self, request: Request) -> StreamResponse:
        response = StreamResponse(200, {"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        piece = b"x" * 65536
        for _ in range(2000):  # 128 MiB: far more than any socket buffer
            await response.write(piece)
            self.written += len(piece)
        await response.write_eof()
        return response

    async def stream_fails(self, request: Request) -> StreamResponse:
        response = StreamResponse(200, {"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        raise RuntimeError("broke mid-stream")

    async def boom(self, request: Request) -> Response:
        raise RuntimeError("secret internal detail")

    async def item(self, request: Request) -> Response:
        return json_response({"item": request.match})

    async def __aenter__(self) -> Harness:
        await self.server.start("127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.server.close(1.0)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.server.port)


def test_keep_alive_and_pipelined_requests_answer_in_order():
    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(post("/echo?a=1", b"first") + post("/echo", b"second") + post("/echo", b"third"))
            bodies = [json.loads((await read_response(reader))[2])["body"] for _ in range(3)]
            assert bodies == ["first", "second", "third"]
            writer.write(post("/echo", b"again"))  # the same connection stays usable
            status, headers, body = await read_response(reader)
            assert status == 200 and json.loads(body)["body"] == "again" and "date" in headers
            writer.close()

    run(scenario())


def test_request_split_at_every_byte_is_parsed():
    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            raw = post("/echo", b'{"x": 1}', "User-Agent: split\r\n")
            for i in range(len(raw)):
                writer.write(raw[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0)
            status, _, body = await read_response(reader)
            assert status == 200 and json.loads(body) == {"method": "POST", "query": "", "body": '{"x": 1}',
                                                          "agent": "split"}
            writer.close()

    run(scenario())


def test_upgrade_requests_are_answered_over_http11_then_closed():
    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            upgrade = b"Host: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
            writer.write(b"GET /items/a HTTP/1.1\r\n" + upgrade + b"\r\n")  # what `curl --http2 http://...` sends
            status, headers, body = await read_response(reader)
            assert (status, json.loads(body), headers["connection"]) == (200, {"item": "a"}, "close")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            reader, writer = await h.connect()  # with a body, llhttp would hand the body to the new protocol
            writer.write(b"POST /echo HTTP/1.1\r\n" + upgrade + b"Content-Length: 2\r\n\r\nhi")
            status, headers, body = await read_response(reader)
            assert (status, json.loads(body)["error"]["code"], headers["connection"]) == (400, "unsupported_upgrade",
                                                                                         "close")
            writer.close()

    run(scenario())


def test_chunked_request_body_is_decoded():
    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n")
            status, _, body = await read_response(reader)
            assert status == 200 and json.loads(body)["body"] == "abcdefg"
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"2\r\nhi\r\n0\r\nUser-Agent: from-a-trailer\r\n\r\n")
            status, _, body = await read_response(reader)  # trailers are read, never taken for headers
            assert status == 200 and json.loads(body) == {"method": "POST", "query": "", "body": "hi", "agent": None}
            writer.close()

    run(scenario())


def test_expect_100_continue_is_answered_before_the_body():
    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"ok")
            status, _, body = await read_response(reader)
            assert status == 200 and json.loads(body)["body"] == "ok"
            writer.close()

    run(scenario())


@pytest.mark.parametrize("request_bytes", [
    post("/echo", b"x" * 2000),
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"200\r\n" + b"y" * 512 + b"\r\n" * 1
    + b"400\r\n" + b"y" * 1024 + b"\r\n0\r\n\r\n",
], ids=["content-length", "expect-continue", "chunked"])
def test_body_over_the_limit_is_413_and_the_connection_closes(request_bytes):
    async def scenario() -> None:
        async with Harness(limit=1024) as h:
            reader, writer = await h.connect()
            writer.write(request_bytes)
            status, headers, body = await read_response(reader)
            assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"
            assert headers["connection"] == "close"
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing else sent (no 100 Continue)
            writer.close()

    run(scenario())


@pytest.mark.parametrize(("raw", "status", "code"), [
    (b"BROKEN\r\n\r\n", 400, "bad_request"),
    (b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "bad_request"),
    # request smuggling shapes: ambiguous framing is refused, never guessed
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
     "bad_request"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400, "bad_request"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd", 400, "bad_request"),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431, "headers_too_large"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long"),
], ids=["garbage", "duplicate-length", "length-and-chunked", "chunked-not-last", "length-list", "huge-header",
        "huge-target"])
def test_malformed_or_oversized_requests_are_refused_and_closed(raw, status, code):
    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(raw)
            got, headers, body = await read_response(reader)
            assert (got, json.loads(body)["error"]["code"]) == (status, code)
            assert headers["connection"] == "close"
            writer.close()

    run(scenario())


def test_unknown_path_404_wrong_method_405_and_prefix_routes():
    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body = await read_response(reader)
            assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
            writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body = await read_response(reader)
            assert status == 405 and "use POST" in json.loads(body)["error"]["message"]
            writer.write(b"GET /items/a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body = await read_response(reader)
            assert status == 200 and json.loads(body) == {"item": "a/b"}
            writer.close()

    run(scenario())


def test_handler_exception_is_a_500_without_details(caplog):
    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert status == 500 and b"secret" not in body and headers["connection"] == "close"
            writer.close()

    run(scenario())
    assert "unhandled error answering GET /boom" in caplog.text


def test_a_stream_that_fails_midway_is_cut_not_followed_by_a_500(caplog):
    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(b"GET /stream-fails HTTP/1.1\r\nHost: x\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 5)
            assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\n9\r\ndata: 1\n\n\r\n")
            assert data.count(b"HTTP/1.1") == 1  # no error response spliced into the stream
            writer.close()

    run(scenario())
    assert "broke mid-stream" in caplog.text


def test_http10_gets_a_close_delimited_stream_and_chunked_for_http11():
    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert (status, headers["transfer-encoding"], body) == (200, "chunked", b"data: 1\n\ndata: 2\n\n")
            writer.close()
            reader, writer = await h.connect()
            writer.write(b"GET /stream HTTP/1.0\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert status == 200 and "transfer-encoding" not in headers and headers["connection"] == "close"
            assert body == b"data: 1\n\ndata: 2\n\n"
            writer.close()

    run(scenario())


def test_stream_to_a_client_that_does_not_read_is_held_by_back_pressure():
    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.5)
            first = h.written
            await asyncio.sleep(0.3)
            assert h.written == first < 32 * 1024 * 1024  # paused: kernel + transport buffers only
            writer.transport.abort()  # the client goes away; the handler is cancelled, not left hanging
            await asyncio.sleep(0.1)
            assert not h.server.connections

    run(scenario())


def test_client_disconnect_cancels_the_handler():
    async def scenario() -> None:
        async with Harness() as h:
            _, writer = await h.connect()
            writer.write(post("/slow", b""))
            await asyncio.wait_for(h.started.wait(), 5)
            writer.transport.abort()
            for _ in range(50):
                if h.cancelled:
                    break
                await asyncio.sleep(0.02)
            assert h.cancelled == 1

    run(scenario())


def test_idle_keep_alive_and_slow_requests_time_out(monkeypatch):
    monkeypatch.setattr(httpserver, "KEEPALIVE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(httpserver, "REQUEST_TIMEOUT_S", 0.2)
    monkeypatch.setattr(httpserver, "SWEEP_INTERVAL_S", 0.05)

    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(post("/echo", b"x"))
            assert (await read_response(reader))[0] == 200
            assert await asyncio.wait_for(reader.read(), 5) == b""  # idle: closed by the server
            reader, writer = await h.connect()
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")  # never finishes
            status, _, body = await read_response(reader)
            assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"

    run(scenario())


def test_close_finishes_in_flight_requests_and_drops_idle_connections():
    async def scenario() -> None:
        h = Harness()
        await h.server.start("127.0.0.1", 0)
        port = h.server.port
        busy_reader, busy_writer = await h.connect()
        idle_reader, _ = await h.connect()
        busy_writer.write(post("/slow", b""))
        await asyncio.wait_for(h.started.wait(), 5)
        closing = asyncio.create_task(h.server.close(5.0))
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # idle: closed at once
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)  # no longer accepting
        h.release.set()
        status, headers, body = await read_response(busy_reader)
        assert (status, body, headers["connection"]) == (200, b"done", "close")
        await asyncio.wait_for(closing, 5)
        assert h.cancelled == 0

    run(scenario())


def test_close_cancels_what_outlives_the_grace_period():
    async def scenario() -> None:
        h = Harness()
        await h.server.start("127.0.0.1", 0)
        _, writer = await h.connect()
        writer.write(post("/slow", b""))
        await asyncio.wait_for(h.started.wait(), 5)
        await h.server.close(0.1)
        await asyncio.sleep(0.05)
        assert h.cancelled == 1 and not h.server.connections

    run(scenario())


def _mutations(seed: int, count: int) -> list[bytes]:
    """Valid requests, bent: flipped bytes, cut short, bad lengths and chunk sizes, stray line ends."""
    import random

    rng = random.Random(seed)
    templates = [post("/echo", b'{"model": "chat"}'), b"GET /items/x HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]
    swaps = [(b"Content-Length: 17", b"Content-Length: -1"), (b"Content-Length: 17", b"Content-Length: 99999999999999999999"),
             (b"5\r\nhello", b"zz\r\nhello"), (b"5\r\nhello", b"fffffffffffffffff\r\nhello"), (b"HTTP/1.1", b"HTTP/9.9"),
             (b"\r\n\r\n", b"\n\n"), (b"Host: x", b"Host x"), (b"Host: x", b"Ho st: x"), (b"/echo", b"/ec ho"),
             (b"POST", b"P\x00ST"), (b"\r\n", b"\r")]
    cases = []
    for _ in range(count):
        raw = bytearray(rng.choice(templates))
        for _ in range(rng.randint(1, 3)):
            kind = rng.randrange(4)
            if kind == 0 and raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            elif kind == 1:
                raw = raw[:rng.randrange(len(raw) + 1)]
            elif kind == 2:
                old, new = rng.choice(swaps)
                raw = bytearray(bytes(raw).replace(old, new, 1))
            else:
                at = rng.randrange(len(raw) + 1)
                raw[at:at] = rng.choice([b"\r\n", b"\x00", b"\xff" * 3, b": ", b" HTTP/1.1\r\n"])
        cases.append(bytes(raw))
    return cases


def test_mangled_requests_never_crash_or_wedge_the_server(caplog):
    """300 bent requests, each in random pieces: every one is answered or the connection closes, promptly."""
    import random

    cases = _mutations(seed=20261123, count=300)

    async def scenario() -> None:
        async with Harness() as h:
            rng = random.Random(7)
            for raw in cases:
                reader, writer = await h.connect()
                cut = rng.randrange(len(raw) + 1)
                writer.write(raw[:cut])
                await writer.drain()
                writer.write(raw[cut:])
                writer.write_eof()  # a client that stops sending: the server must not wait forever
                data = await asyncio.wait_for(reader.read(), 5)
                assert not data or data.startswith(b"HTTP/1.1 "), data[:80]
                writer.close()
            for _ in range(50):  # every connection was closed by one side or the other
                if not h.server.connections:
                    break
                await asyncio.sleep(0.02)
            assert not h.server.connections
            reader, writer = await h.connect()  # still healthy
            writer.write(post("/echo", b"fine"))
            assert (await read_response(reader))[0] == 200
            writer.close()

    run(scenario(), timeout=60)
    gc.collect()  # a task that died with an exception nobody saw is reported when collected
    assert "unhandled error" not in caplog.text and "never retrieved" not in caplog.text


# -- hostile clients (issue 10) ----------------------------------------------------------------------------------

@pytest.mark.parametrize("tail", [
    b"BROKEN\r\n\r\n",
    b"GET /items/c HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    b"GET /items/c HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
], ids=["garbage", "no-host", "huge-header"])
@pytest.mark.parametrize("first", ["/echo", "/slow"])
def test_pipelined_valid_requests_are_answered_before_the_malformed_one(first, tail):
    """Issue 10 item 5: what was valid is answered, in order; then the refusal; then the connection closes."""

    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(post(first, b"first") + b"GET /items/b HTTP/1.1\r\nHost: x\r\n\r\n" + tail)
            if first == "/slow":  # the refusal must wait for the handler in flight, not cut it
                await asyncio.wait_for(h.started.wait(), 5)
                await asyncio.sleep(0.05)
                h.release.set()
            one, two, three = [await read_response(reader) for _ in range(3)]
            assert one[0] == 200 and one[2] in (b"done", b'{"method": "POST", "query": "", "body": "first", '
                                                         b'"agent": null}')
            assert (two[0], json.loads(two[2])) == (200, {"item": "b"})
            assert three[0] in (400, 431) and three[1]["connection"] == "close"
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(scenario())


def test_a_request_that_closes_is_answered_whatever_follows_it():
    """Bytes after a `Connection: close` request are refused unread; its answer still arrives, then the end."""

    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(post("/slow", b"", "Connection: close\r\n") + b"GET /items/b HTTP/1.1\r\nHost: x\r\n\r\n" * 4000)
            await asyncio.wait_for(h.started.wait(), 5)
            await asyncio.sleep(0.05)
            h.release.set()
            status, headers, body = await read_response(reader)
            assert (status, body, headers["connection"]) == (200, b"done", "close")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(scenario())


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET /items/a HTTP/1.1\r\n\r\n", 400),
    (b"GET /items/a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    (b"GET /items/a HTTP/1.1\r\nhost: x\r\n\r\n", 200),
    (b"GET /items/a HTTP/1.0\r\n\r\n", 200),  # HTTP/1.0 may omit Host
], ids=["missing", "twice", "lower-case", "http10"])
def test_http11_requests_need_exactly_one_host(raw, status):
    """Issue 10: an HTTP/1.1 request without Host (or with two) is 400 and closes, as RFC 9112 and nginx do."""

    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(raw)
            got, headers, body = await read_response(reader)
            assert got == status, body
            if status == 400:
                assert json.loads(body)["error"]["code"] == "bad_request" and "Host" in json.loads(body)["error"][
                    "message"]
                assert headers["connection"] == "close" and await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(scenario())


def test_more_than_100_headers_are_431_and_100_are_fine():
    async def scenario() -> None:
        async with Harness() as h:
            for count, status in ((99, 200), (100, 431)):  # plus Host: 100 and 101 headers
                reader, writer = await h.connect()
                extra = b"".join(b"X-H%d: v\r\n" % i for i in range(count))
                writer.write(b"GET /items/a HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
                got, _, body = await read_response(reader)
                assert got == status, body
                writer.close()

    run(scenario())


CHUNKED = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(("prefix", "status", "code"), [
    (b"GET /items/a HTTP/1.1\r\nHost: x\r\nX-Endless: ", 431, "headers_too_large"),
    (b"GET /items/a HTTP/1.1\r\nHost: x\r\nX-Endless", 431, "headers_too_large"),  # a name that never ends
    (b"GET /items/a HTTP/1.1\r\nHost: x\r\n" + b"X-Many: v\r\n" * 50 + b"X-Endless: ", 431, "headers_too_large"),
    (b"GET /", 414, "uri_too_long"),
    (CHUNKED + b"3\r\nabc\r\n0\r\nX-Trailer: ", 400, "bad_request"),  # a trailer that never ends
    (CHUNKED + b"3;ext=", 400, "bad_request"),  # a chunk extension that never ends
], ids=["header-value", "header-name", "after-headers", "url", "trailer", "chunk-extension"])
def test_head_bytes_are_counted_as_they_arrive(prefix, status, code):
    """Issue 10 item 1: a line that never ends is refused at the head limit (64 KiB), not at the 408 timeout."""

    async def scenario() -> None:
        async with Harness() as h:
            got, sent, body = await stream_until_answered(h.server.port, endless(prefix, b"a" * 8192, 8 * 1024 * 1024))
            assert (got, json.loads(body)["error"]["code"] if body else None) == (status, code), sent
            assert sent <= len(prefix) + httpserver.MAX_HEAD_BYTES + 4 * 8192, sent  # a few reads past the limit
            for _ in range(100):
                if not h.server.connections:
                    break
                await asyncio.sleep(0.01)
            assert not h.server.connections

    run(scenario())


def test_a_refused_upload_still_reads_its_answer():
    """A client that sends its whole body before reading (as most do) gets the 413, not a connection reset:
    the server reads on and drops what follows a refusal, rather than closing on unread bytes (a reset)."""

    async def scenario() -> None:
        async with Harness(limit=1024) as h:
            reader, writer = await h.connect()
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n")
            for _ in range(64):
                writer.write(b"x" * 65536)
                await writer.drain()
            status, headers, body = await read_response(reader)
            assert (status, json.loads(body)["error"]["code"], headers["connection"]) == (413, "body_too_large",
                                                                                         "close")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(scenario())


def test_a_client_that_keeps_sending_after_a_refusal_is_cut_off(monkeypatch):
    monkeypatch.setattr(httpserver, "LINGER_S", 0.2)
    monkeypatch.setattr(httpserver, "SWEEP_INTERVAL_S", 0.05)

    async def scenario() -> None:
        async with Harness() as h:
            reader, writer = await h.connect()
            writer.write(b"BROKEN\r\n\r\n")
            assert (await read_response(reader))[0] == 400
            with pytest.raises(ConnectionError):
                for _ in range(1000):
                    writer.write(b"x" * 4096)
                    await writer.drain()
                    await asyncio.sleep(0.01)
            assert not h.server.connections

    run(scenario())


def test_slowloris_head_and_unfinished_body_get_408_within_the_request_timeout(monkeypatch):
    monkeypatch.setattr(httpserver, "REQUEST_TIMEOUT_S", 0.3)
    monkeypatch.setattr(httpserver, "SWEEP_INTERVAL_S", 0.05)

    async def scenario() -> None:
        async with Harness() as h:
            for raw in (b"GET /items/a HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000,  # a byte now and then
                        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"):  # a body that stalls
                reader, writer = await h.connect()
                t0 = time.monotonic()
                answer = asyncio.create_task(read_response(reader))
                for byte in raw:
                    if answer.done():
                        break
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.02 if raw.startswith(b"GET") else 0)  # the trickle keeps the socket busy
                status, headers, body = await answer
                assert (status, json.loads(body)["error"]["code"]) == (408, "request_timeout")
                assert 0.2 <= time.monotonic() - t0 < 1.5 and headers["connection"] == "close"
                writer.close()

    run(scenario())
