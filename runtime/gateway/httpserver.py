"""A lean HTTP/1.1 server for the gateway: ``asyncio.Protocol`` plus httptools (llhttp).

aiohttp's server costs ~50 µs of CPU per request on the benchmark box; this one ~20 µs,
which is what lets the gateway keep its tail latency close to the backend's. It serves
exactly what the gateway needs:

* requests read whole before the handler runs, bounded by ``body_limit()`` (413 before
  reading on, from ``Content-Length`` or as chunks arrive); heads by ``MAX_HEAD_BYTES``,
  counted as bytes arrive (a line that never ends is refused at the limit, not when it
  completes: httptools buffers a header field whole before handing it over), and by
  ``MAX_HEADERS`` fields (431; 414 when the request target is over half the limit);
  trailers count against both and are dropped, never merged into the headers; chunk
  framing is bounded too; ``Expect: 100-continue`` answered;
* HTTP/1.1 requests need exactly one ``Host`` (RFC 9112; HTTP/1.0 may omit it);
* malformed requests get 400; a refused request is answered after the requests pipelined
  before it, then the connection is half-closed: what the client still sends is read and
  dropped for up to ``LINGER_S`` so that it reads the answer instead of a reset;
* keep-alive and pipelining (one handler at a time per connection, answers in order);
* handlers return a :class:`Response`, or stream through a :class:`StreamResponse`
  (chunked transfer coding, with write back-pressure);
* a client that disconnects cancels its handler's task; like aiohttp and uvicorn, a client
  that shuts down its sending side (FIN) counts as gone: the wire cannot tell it from a close;
* idle keep-alive connections close after ``KEEPALIVE_TIMEOUT_S``; a request whose head
  and body do not arrive within ``REQUEST_TIMEOUT_S`` gets 408;
* :meth:`Server.close` stops accepting, closes idle connections and lets in-flight
  requests finish for a grace period.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

log = logging.getLogger("vilms.gateway")

MAX_HEAD_BYTES = 64 * 1024  # request line, header and trailer fields of one request, as they arrive
MAX_HEADERS = 100  # header and trailer fields of one request (Envoy's default)
LINGER_S = 2.0  # after a refusal, how long the client's further bytes are read and dropped
KEEPALIVE_TIMEOUT_S = 75.0
REQUEST_TIMEOUT_S = 60.0
MAX_PIPELINED = 16  # requests queued on one connection before reading pauses
SWEEP_INTERVAL_S = 1.0

_REASONS = {s.value: s.phrase for s in HTTPStatus}


class Request:
    """One parsed request: ``method``, ``path``, ``query``, ``headers`` (lower-case names), ``body``."""

    __slots__ = ("method", "path", "query", "headers", "body", "keep_alive", "http10", "match", "prepared", "_conn")

    def __init__(self, method: str, target: bytes, headers: dict[str, str], keep_alive: bool, http10: bool,
                 conn: _Connection | None) -> None:
        self.method = method
        if not target.startswith(b"/"):  # absolute-form (a proxy-style request line)
            parsed = httptools.parse_url(target)
            target = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        path, _, query = target.partition(b"?")
        self.path = path.decode("latin-1")
        self.query = query.decode("latin-1")
        self.headers = headers
        self.body = b""
        self.keep_alive = keep_alive
        self.http10 = http10
        self.match = ""  # the tail of the path matched by a prefix route
        self.prepared = False  # a StreamResponse has sent its head
        self._conn = conn


class Response:
    """A complete response; the server adds ``Content-Length``, ``Date`` and ``Connection``."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, body: bytes = b"", status: int = 200, content_type: str = "application/json",
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = {"Content-Type": content_type, **headers} if headers else {"Content-Type": content_type}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data).encode(), status, headers=headers)


class StreamResponse:
    """A response written piece by piece: ``await prepare(request)``, ``write()``, ``write_eof()``."""

    __slots__ = ("status", "headers", "_conn", "_chunked")

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = dict(headers or {})
        self._conn: _Connection | None = None
        self._chunked = True

    async def prepare(self, request: Request) -> None:
        conn = request._conn
        assert conn is not None, "prepare() needs a request read by the server"
        self._conn = conn
        self._chunked = not request.http10
        if not self._chunked:
            request.keep_alive = False  # HTTP/1.0: the body ends when the connection closes
        headers = dict(self.headers)
        if self._chunked:
            headers["Transfer-Encoding"] = "chunked"
        conn.write(_head(self.status, headers, request))
        request.prepared = True
        await self._drained(conn)

    async def write(self, data: bytes) -> None:
        if not data:
            return
        conn = self._conn
        assert conn is not None, "write() before prepare()"
        conn.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
        if conn.writable is not None:
            await self._drained(conn)

    async def write_eof(self) -> None:
        conn = self._conn
        assert conn is not None, "write_eof() before prepare()"
        if self._chunked:
            conn.write(b"0\r\n\r\n")
        if conn.writable is not None:
            await self._drained(conn)

    async def _drained(self, conn: _Connection) -> None:
        """Until the client has taken enough bytes (the transport's buffer below its high-water mark)."""
        await conn.drain()


Handler = Callable[[Request], Awaitable["Response | StreamResponse"]]
ErrorResponse = Callable[[int, str, str], Response]


class Router:
    """Exact paths, plus prefix routes whose tail (URL-decoded) lands in ``request.match``."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._prefix: list[tuple[str, dict[str, Handler]]] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        self._exact.setdefault(path, {})[method] = handler

    def add_prefix(self, method: str, prefix: str, handler: Handler) -> None:
        for known, methods in self._prefix:
            if known == prefix:
                methods[method] = handler
                return
        self._prefix.append((prefix, {method: handler}))

    def resolve(self, request: Request) -> Handler | tuple[int, str]:
        """The handler, or (404 | 405, message)."""
        methods = self._exact.get(request.path)
        if methods is None:
            for prefix, candidates in self._prefix:
                if request.path.startswith(prefix) and len(request.path) > len(prefix):
                    request.match = unquote(request.path[len(prefix):])
                    methods = candidates
                    break
            else:
                return 404, f"No route for {request.path}."
        handler = methods.get(request.method)
        if handler is None:
            return 405, f"{request.method} is not allowed on {request.path}; use {', '.join(sorted(methods))}."
        return handler


class Server:
    """Listens, parses, dispatches through ``router``; ``errors(status, message, code)`` shapes error bodies."""

    def __init__(self, router: Router, errors: ErrorResponse, body_limit: Callable[[], int]) -> None:
        self.router = router
        self.errors = errors
        self.body_limit = body_limit
        self.connections: set[_Connection] = set()
        self.closing = False
        self.clock = time.monotonic()
        self.date = _date_header()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int, backlog: int = 1024) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, backlog=backlog,
                                                reuse_address=True)
        self._sweeper = loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def close(self, grace_s: float) -> None:
        """Stop accepting; finish in-flight requests for up to ``grace_s``; then drop the rest."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            if conn.idle:
                conn.close()
        deadline = time.monotonic() + grace_s
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        await asyncio.sleep(0)  # let cancelled handlers unwind

    def _sweep(self) -> None:
        self.clock = now = time.monotonic()
        self.date = _date_header()
        for conn in list(self.connections):
            conn.expire(now)
        if not self.closing:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL_S, self._sweep)


class _Reject(Exception):
    """Raised inside a parser callback to refuse the request with ``status``."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "parser", "queue", "task", "paused_reading", "writable", "closed",
                 "last_active", "started", "url", "headers", "head_bytes", "fields", "in_head", "wire", "body",
                 "body_size", "limit", "rejection", "failed", "refusal", "linger_until")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.task: asyncio.Task[None] | None = None
        self.paused_reading = False
        self.writable: asyncio.Future[None] | None = None  # set while the transport's buffer is full
        self.closed = False
        self.last_active = server.clock
        self.started = 0.0  # when the request being read began; 0: none in progress
        self.url = b""
        self.headers: dict[str, str] = {}
        self.head_bytes = 0  # of the fields httptools has handed over
        self.fields = 0
        self.in_head = True  # reading a request head (or waiting for one), not a body
        self.wire = 0  # bytes received since the head (or the body) began, counted per read
        self.body: list[bytes] = []
        self.body_size = 0
        self.limit = 0
        self.rejection: _Reject | None = None
        self.failed = False  # a request was refused: the parser is spent, input is dropped
        self.refusal: tuple[int, str, str] | None = None  # to answer once the requests before it are
        self.linger_until = 0.0

    # -- transport events --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self.queue.clear()
        if self.task is not None and not self.task.done():
            self.task.cancel()  # the client is gone: stop the work (and the upstream request) for it
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)  # a writer waiting to drain wakes; its next write raises

    def pause_writing(self) -> None:
        if self.writable is None or self.writable.done():
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def data_received(self, data: bytes) -> None:
        self.last_active = self.server.clock
        if self.failed:
            return  # refused: read and dropped, so that the client reads the answer instead of a reset
        self.wire += len(data)  # a read that starts one phase and ends in the next counts for neither
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # e.g. curl's `Upgrade: h2c`: the request is answered over HTTP/1.1, then the connection closes
        except (_Reject, httptools.HttpParserError) as exc:
            # httptools replaces an exception raised in a callback by its own; the reason is kept here
            rejection, self.rejection = self.rejection, None
            if rejection is not None:
                self._refuse(rejection.status, rejection.message, rejection.code)
            else:
                self._refuse(400, f"Malformed HTTP request: {exc}.", "bad_request")
        else:
            if self.wire > MAX_HEAD_BYTES:
                self._overflow()

    def _overflow(self) -> None:
        """A head, or a chunked body's framing, is past its limit before httptools handed it over."""
        if self.in_head:
            if len(self.url) > MAX_HEAD_BYTES // 2:
                self._refuse(414, "The request target is too long.", "uri_too_long")
            else:
                self._refuse(431, f"The request head exceeds the gateway limit of {MAX_HEAD_BYTES} bytes.",
                             "headers_too_large")
        elif self.wire > MAX_HEAD_BYTES + 2 * self.body_size:  # chunk extensions or trailer fields, endless
            self._refuse(400, "The chunked body's framing (chunk extensions, trailer fields) exceeds the gateway "
                              "limit.", "bad_request")

    # -- parser callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.started = self.server.clock or 1e-9
        self.url = b""
        self.headers = {}
        self.head_bytes = 0
        self.fields = 0
        self.body = []
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEAD_BYTES:
            self._reject(414, "The request target is too long.", "uri_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        self.fields += 1
        if self.head_bytes > MAX_HEAD_BYTES:
            self._reject(431, f"The request head exceeds the gateway limit of {MAX_HEAD_BYTES} bytes.",
                          "headers_too_large")
        if self.fields > MAX_HEADERS:
            self._reject(431, f"The request has more than the gateway limit of {MAX_HEADERS} header fields.",
                         "headers_too_large")
        if not self.in_head:
            return  # a trailer field: counted, never merged into the headers the handler trusts
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        known = self.headers.get(key)
        if known is None:
            self.headers[key] = text
        elif key == "host":
            self._reject(400, "The request has more than one Host header.", "bad_request")
        else:
            self.headers[key] = f"{known}, {text}"

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.wire = 0
        if "host" not in self.headers and self.parser.get_http_version() != "1.0":
            self._reject(400, "An HTTP/1.1 request needs a Host header.", "bad_request")
        self.limit = self.server.body_limit()
        length = self.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            self._reject(413, f"Request body exceeds the gateway limit of {self.limit} bytes.", "body_too_large")
        if self.headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.limit:
            self._reject(413, f"Request body exceeds the gateway limit of {self.limit} bytes.", "body_too_large")
        self.body.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        if parser.should_upgrade() and (self.headers.get("content-length", "0") != "0"
                                        or "transfer-encoding" in self.headers):
            # llhttp hands everything after the head of an Upgrade request to the new protocol
            self._reject(400, "An Upgrade request cannot carry a body here; send it without Upgrade.",
                         "unsupported_upgrade")
        request = Request(parser.get_method().decode("latin-1"), self.url, self.headers,
                          parser.should_keep_alive() and not parser.should_upgrade(),
                          parser.get_http_version() == "1.0", self)
        request.body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.started = 0.0
        self.body = []
        self.in_head = True
        self.wire = 0
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._serve(request))
        else:
            self.queue.append(request)
            if len(self.queue) >= MAX_PIPELINED and not self.paused_reading and self.transport is not None:
                self.transport.pause_reading()
                self.paused_reading = True

    def _reject(self, status: int, message: str, code: str) -> None:
        self.rejection = _Reject(status, message, code)
        raise self.rejection

    # -- serving -----------------------------------------------------------------------
    async def _serve(self, request: Request) -> None:
        while True:
            try:
                await self._answer(request)
            except ConnectionError:  # the client left while we answered
                request.keep_alive = False
            if self.closed or not request.keep_alive or self.server.closing:
                self.task = None
                if self.failed:  # reading was paused on a refusal: bytes may wait unread
                    self._linger()
                else:
                    self.close()
                return
            if not self.queue:
                self.task = None
                self.last_active = self.server.clock
                if self.refusal is not None:  # the requests before it are answered: now the refusal
                    self._answer_refusal(*self.refusal)
                return
            request = self.queue.popleft()
            if self.paused_reading and not self.failed and self.transport is not None:
                self.transport.resume_reading()
                self.paused_reading = False

    async def _answer(self, request: Request) -> None:
        server = self.server
        handler = server.router.resolve(request)
        if isinstance(handler, tuple):
            status, message = handler
            response: Response | StreamResponse = server.errors(status, message, "not_found" if status == 404
                                                                else "method_not_allowed")
        else:
            try:
                response = await handler(request)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unhandled error answering %s %s", request.method, request.path)
                request.keep_alive = False
                if request.prepared:  # part of a stream is out: cut it, so the client sees it incomplete
                    self.abort()
                    return
                response = server.errors(500, "The gateway failed to answer this request.", "internal_error")
        if isinstance(response, Response) and not self.closed:
            if server.closing:
                request.keep_alive = False
            headers = response.headers
            headers["Content-Length"] = str(len(response.body))
            self.write(_head(response.status, headers, request) + response.body)

    # -- writing and closing -----------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        self.transport.write(data)

    async def drain(self) -> None:
        if self.writable is not None:
            await self.writable

    @property
    def idle(self) -> bool:
        return self.task is None and not self.started

    def expire(self, now: float) -> None:
        """Close an idle keep-alive connection or a request that is too slow to arrive."""
        if self.linger_until:
            if now > self.linger_until:
                self.abort()  # the refusal had its chance; a client that does not read it is not waited for
        elif self.started and now - self.started > REQUEST_TIMEOUT_S:
            self._refuse(408, f"The request did not arrive within {REQUEST_TIMEOUT_S:g} s.", "request_timeout")
        elif self.idle and now - self.last_active > KEEPALIVE_TIMEOUT_S:
            self.close()

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Refuse an unreadable request: what follows it on the wire cannot be trusted, so the connection
        ends; the requests before it are answered first, in order."""
        self.started = 0.0
        self.failed = True
        if self.closed or self.transport is None:
            return
        if self.task is None:
            self._answer_refusal(status, message, code)
            return
        self.refusal = (status, message, code)
        if not self.paused_reading:
            self.transport.pause_reading()
            self.paused_reading = True

    def _answer_refusal(self, status: int, message: str, code: str) -> None:
        self.refusal = None
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return
        response = self.server.errors(status, message, code)
        headers = {**response.headers, "Content-Length": str(len(response.body)), "Connection": "close"}
        transport.write(_status_line(status) + _header_block(headers, self.server.date) + response.body)
        self._linger()

    def _linger(self) -> None:
        """Half-close, then read and drop what the client still sends, for up to ``LINGER_S``: closing on
        unread bytes would reset the connection, and a reset can destroy the answer before it is read."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.server.closing or not transport.can_write_eof():
            self.close()
            return
        self.failed = True
        transport.write_eof()  # the client reads the answer, then end of stream; it closes its side in turn
        self.linger_until = time.monotonic() + LINGER_S
        if self.paused_reading:
            transport.resume_reading()
            self.paused_reading = False

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.transport is not None:
            self.transport.abort()


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Unknown").encode())


def _head(status: int, headers: dict[str, str], request: Request) -> bytes:
    conn = request._conn
    date = conn.server.date if conn is not None else _date_header()
    if not request.keep_alive:
        headers = {**headers, "Connection": "close"}
    elif request.http10:
        headers = {**headers, "Connection": "keep-alive"}
    return _status_line(status) + _header_block(headers, date)


def _header_block(headers: dict[str, str], date: str) -> bytes:
    lines = [f"Date: {date}"]
    for name, value in headers.items():
        if "\n" in value or "\r" in value:
            raise ValueError(f"header {name} holds a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _date_header() -> str:
    return formatdate(usegmt=True)
