#!/usr/bin/env python3
"""Soak the ViLMS gateway: N minutes of good clients mixed with hostile ones, watching for leaks.

    python bench/soak.py [--minutes 10] [--json FILE] [--strict]

Starts fake vLLM engines (``tests/runtime/gateway_fakes.py``, extended here with faults)
and the gateway (``python -m vilms serve --routes FILE``) as subprocesses on 127.0.0.1, then:

* good clients (``--good-clients``, ``--good-rps``): steady chat traffic, streaming and not,
  over three aliases, on kept-alive and on fresh connections; every answer is checked
  (status, JSON or SSE shape, the exact text the engine sent, ``[DONE]``);
* hostile probes, started in rotation (a probe still running is not started again):
  ``endless_header``, ``many_headers`` (1,000 headers of 1 KiB), ``slowloris``, ``slow_body``,
  ``deep_json``, ``pipelined_malformed``, ``stalled_reader`` (a streaming client that stops
  reading), ``disconnect_midstream``, ``invalid_keys``, ``huge_body``, and engines that answer
  ``engine_500`` / ``engine_html`` / ``engine_empty`` (an empty 200) / ``engine_nodone`` (a
  stream without ``[DONE]``) / ``engine_hang`` (one of two replicas SIGSTOPped for a while);
* every ``--sample-s`` seconds, the gateway's RSS and open file descriptors (``/proc``).

Phases: warm-up (good traffic, every alias touched once; then the *start* sample), the
soak, a cool-down with good traffic only (then the *end* sample). Reported: start/end/max
RSS and fds, their slopes, good requests sent/failed, and each probe's outcomes.

Exit status: 1 when a good request failed, when RSS or fds trend up beyond the tolerances
(``--rss-slope-max`` MB/min and ``--fd-slope-max`` fds/min, Theil-Sen over the second half
of the soak, where the first pass of every probe has already set the allocator's high-water
marks; and ``--fd-drift-max``: end minus start), or the gateway died; 0 otherwise. A probe
that fails is reported as FAIL but changes the exit status only with ``--strict``.

The probes' pass criteria are written next to each probe below; they expect the bounds a
gateway should have (a request head or body that never completes is cut off, a client that
reads nothing is given up, an engine's non-OpenAI answer becomes a 502, a truncated stream
ends with an error event), so some fail on a gateway that lacks them.

Also run here as a fault-injecting engine: ``python bench/soak.py engine --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: its helper modules
from procs import free_port, spawn, stop, wait_http  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FAKES = REPO / "tests" / "runtime" / "gateway_fakes.py"
MODEL = "qwen2.5-1.5b"
REPLY = ["Hello", " from", " the", " fake", " server", "."]  # what gateway_fakes answers
KEY = "sk-vilms-soak-good-key"
KEY_ENV = "VILMS_SOAK_KEY"
GOOD_ALIASES = ("chat", "chat-sys", "chat-side")
FAULT_MODELS = ("fault-500", "fault-html", "fault-empty", "fault-nodone", "long")
LONG_CHUNK = "x" * 4096
LONG_CHUNKS = 16_000  # ~64 MiB of SSE: more than any buffer between engine and client

# Gateway settings for the soak's routes (a generic, production-like profile).
SETTINGS: dict[str, Any] = dict(retries=2, connect_timeout_s=2.0, read_timeout_s=5.0, first_byte_timeout_s=5.0,
                                request_timeout_s=60.0, write_timeout_s=10.0, max_body_bytes=1 << 20,
                                max_response_bytes=16 << 20, max_queue=1024, cooldown_s=5.0, eject_after=1, discovery_interval_s=5.0,
                                balance="round_robin", on_overlong_prompt="reject")


# ----------------------------------------------------------------------------------------
# The engine side: gateway_fakes' vLLM plus faults chosen by model name, and stream tracking.
# ----------------------------------------------------------------------------------------

def run_engine(port: int) -> None:
    sys.path.insert(0, str(FAKES.parent))
    from aiohttp import web
    from gateway_fakes import FakeVLLM  # type: ignore[import-not-found]

    class SoakEngine(FakeVLLM):
        """``long``: a ~64 MiB stream that only ends early when its reader goes away;
        ``fault-*``: the faults; anything else: gateway_fakes' healthy answers.
        ``GET /_soak/streams`` lists ``long`` streams in progress and how the others ended."""

        active: set[str]
        ended: dict[str, str]

        def build_app(self) -> web.Application:
            app = super().build_app()
            app.router.add_get("/_soak/streams", self.streams)
            return app

        async def _enter(self, request: web.Request) -> dict[str, Any]:  # no request log: it would grow
            return await request.json()

        async def streams(self, request: web.Request) -> web.Response:
            ended, self.ended = self.ended, {}
            return web.json_response({"active": sorted(self.active), "ended": ended})

        async def chat(self, request: web.Request) -> web.StreamResponse:
            body = await request.json()
            model = body.get("model")
            if model == "fault-500":
                return self._error(500, "EngineCore encountered an issue.", "InternalServerError")
            if model == "fault-html":
                return web.Response(text="<html><body><h1>Welcome to nginx!</h1></body></html>", content_type="text/html")
            if model == "fault-empty":
                return web.Response(body=b"", content_type="application/json")
            if model == "fault-nodone" and body.get("stream"):
                response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
                await response.prepare(request)
                for token in REPLY[:3]:  # no finish_reason, no [DONE]: the engine died mid-answer
                    chunk = {"id": "chatcmpl-nodone", "object": "chat.completion.chunk", "created": 0, "model": model,
                             "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]}
                    await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                await response.write_eof()
                return response
            if model == "long":
                return await self.long(request, body)
            return await super().chat(request)

        async def long(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
            marker = str(body["messages"][-1]["content"])
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
            await response.prepare(request)
            self.active.add(marker)
            how = "complete"
            try:
                piece = b"data: " + json.dumps({"id": "chatcmpl-long", "object": "chat.completion.chunk", "created": 0,
                                                "model": "long", "choices": [{"index": 0, "delta": {"content": LONG_CHUNK},
                                                                              "finish_reason": None}]}).encode() + b"\n\n"
                for _ in range(LONG_CHUNKS):
                    await response.write(piece)
                await response.write(b"data: [DONE]\n\n")
                await response.write_eof()
            except (asyncio.CancelledError, ConnectionError):
                how = "cancelled"
                raise
            finally:
                self.active.discard(marker)
                self.ended[marker] = how
                if len(self.ended) > 1000:
                    self.ended.pop(next(iter(self.ended)))
            return response

    engine = SoakEngine(models=(MODEL, *FAULT_MODELS), port=port)
    engine.active, engine.ended = set(), {}
    web.run_app(engine.build_app(), host="127.0.0.1", port=port, access_log=None, print=None,
                handler_cancellation=True)


# ----------------------------------------------------------------------------------------
# Processes
# ----------------------------------------------------------------------------------------

@dataclass
class Engine:
    name: str
    port: int
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_engine(name: str, work: Path) -> Engine:
    port = free_port()
    proc = spawn([sys.executable, str(Path(__file__).resolve()), "engine", "--port", str(port)],
                 log=work / f"engine-{name}.log")
    if not wait_http(f"http://127.0.0.1:{port}/health", 20):
        stop(proc)
        raise SystemExit(f"engine {name} did not start; see {work / f'engine-{name}.log'}")
    return Engine(name, port, proc)


def write_routes(path: Path, engines: dict[str, Engine]) -> None:
    """The soak's routes table, through the routes contract."""
    from vilms.compiler.contracts.routes import (
        ROUTES,
        Backend,
        GatewayRoutes,
        GatewaySettings,
        HardwareInfo,
        KeyScope,
        Route,
    )

    def backend(name: str, *replicas: str) -> Backend:
        return Backend(id=name, engine="vllm", endpoints=tuple(engines[r].url for r in replicas), api_key_env=None,
                       discovery=None, runtime_lora=False)

    def route(name: str, backend_id: str, model: str = MODEL, **extra: Any) -> Route:
        return Route(name=name, backend=backend_id, model=model, adapter=None, context=8192, max_output_tokens=2048,
                     system=extra.get("system"), params=extra.get("params", {}), fallbacks=(), task="chat")

    aliases = [route("chat", "main"), route("chat-sys", "main", system="You are terse.", params={"temperature": 0.2}),
               route("chat-side", "side"), route("ha", "ha")]
    aliases += [route(model, "faults", model=model) for model in FAULT_MODELS]
    routes = GatewayRoutes(
        deployment="soak",
        hardware=HardwareInfo(name="soak", kind="cpu", memory_bytes=16 * 2**30),
        gateway=GatewaySettings(api_keys_env=None, keys={"soak": KeyScope(name="soak", env=KEY_ENV, aliases=None,
                                                                          rpm=None, tpm=None)},
                                ops_key_env=None, telemetry=None, **SETTINGS),
        backends={b.id: b for b in (backend("main", "main-a", "main-b"), backend("side", "side"),
                                    backend("ha", "ha-a", "ha-b"), backend("faults", "faults"))},
        aliases={r.name: r for r in aliases},
    )
    path.write_bytes(ROUTES.dump(routes, source=None))


def proc_sample(pid: int) -> tuple[float, int]:
    """(RSS in MB, open file descriptors) of ``pid``, from /proc."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def theil_sen(points: list[tuple[float, float]]) -> float:
    """Median of pairwise slopes (per unit of x): a trend estimate that a few spikes do not move."""
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1:] if x2 > x1]
    return statistics.median(slopes) if slopes else 0.0


# ----------------------------------------------------------------------------------------
# Raw HTTP on sockets (the hostile side)
# ----------------------------------------------------------------------------------------

STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


def status_of(data: bytes) -> int | None:
    match = STATUS.match(data)
    return int(match.group(1)) if match else None


async def connect(port: int, rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    sock.setblocking(False)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed client would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


async def read_all(reader: asyncio.StreamReader, limit: int = 1 << 20, into: bytearray | None = None) -> tuple[bytes, str]:
    """Read to EOF: (data, how it ended: "eof" | "reset" | "limit"); what arrived is also in ``into``."""
    data = bytearray() if into is None else into
    try:
        while len(data) < limit:
            piece = await reader.read(65536)
            if not piece:
                return bytes(data), "eof"
            data += piece
    except (ConnectionError, OSError):
        return bytes(data), "reset"
    return bytes(data), "limit"


@dataclass
class Pushed:
    status: int | None
    sent: int  # bytes handed to the kernel
    ended: str  # eof | reset | open (the gateway neither answered nor closed within the bound)
    seconds: float
    answer: bytes


async def push(port: int, head: bytes, pieces: Iterator[bytes], bound_s: float, pace_s: float = 0.0) -> Pushed:
    """Send ``head`` then ``pieces`` until the gateway answers or closes (or ``bound_s`` passes)."""
    t0 = time.monotonic()
    reader, writer = await connect(port)
    got = bytearray()
    answer = asyncio.ensure_future(read_all(reader, 1 << 16, into=got))
    sent = 0
    try:
        for piece in _chain([head], pieces):
            if answer.done() or time.monotonic() - t0 > bound_s:
                break
            writer.write(piece)
            drain = asyncio.ensure_future(writer.drain())
            done, _ = await asyncio.wait({drain, answer}, timeout=max(0.0, bound_s - (time.monotonic() - t0)),
                                         return_when=asyncio.FIRST_COMPLETED)
            if drain not in done:
                drain.cancel()
                break
            if drain.exception() is not None:
                break
            sent += len(piece)
            if pace_s:
                await asyncio.sleep(pace_s)
        remaining = max(0.5, bound_s - (time.monotonic() - t0))
        try:
            data, ended = await asyncio.wait_for(asyncio.shield(answer), remaining)
        except TimeoutError:
            data, ended = bytes(got), "open"
        return Pushed(status_of(data), sent, ended, time.monotonic() - t0, data)
    finally:
        answer.cancel()
        writer.transport.abort()


def _chain(*parts: Any) -> Iterator[bytes]:
    for part in parts:
        yield from part


def request_bytes(body: bytes | str, path: str = "/v1/chat/completions", key: str | None = KEY,
                  extra: str = "", method: str = "POST") -> bytes:
    body = body.encode() if isinstance(body, str) else body
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def chat_body(alias: str, content: str = "Say hello.", stream: bool = False, max_tokens: int | None = 16) -> bytes:
    body: dict[str, Any] = {"model": alias, "messages": [{"role": "user", "content": content}], "stream": stream}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return json.dumps(body).encode()


def split_response(data: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """(status, headers, body decoded from chunked coding when so sent) of one raw response."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            try:
                size = int(size_line.split(b";")[0], 16)
            except ValueError:
                break
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2:]
        return status_of(data), headers, body
    if "content-length" in headers:
        rest = rest[: int(headers["content-length"])]
    return status_of(data), headers, rest


def sse_events(body: bytes) -> list[str]:
    return [line[6:].decode() for line in body.split(b"\n") if line.startswith(b"data: ")]


def is_openai_error(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), dict) and "message" in data["error"]


# ----------------------------------------------------------------------------------------
# Good clients
# ----------------------------------------------------------------------------------------

@dataclass
class GoodStats:
    sent: int = 0
    failed: int = 0
    streamed: int = 0
    by_alias: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # the first few, verbatim

    def fail(self, detail: str) -> None:
        self.failed += 1
        if len(self.failures) < 20:
            self.failures.append(detail)


async def good_request(session: Any, base: str, alias: str, stream: bool, max_tokens: int, stats: GoodStats,
                       timeout_s: float) -> None:
    import aiohttp

    expected = "".join(REPLY[:max_tokens])
    payload = {"model": alias, "messages": [{"role": "user", "content": f"good {random.random():.6f}"}],
               "max_tokens": max_tokens, "stream": stream}
    stats.sent += 1
    stats.by_alias[alias] = stats.by_alias.get(alias, 0) + 1
    stats.streamed += stream
    t0 = time.monotonic()
    what = f"{alias} stream={int(stream)}"
    try:
        async with session.post(f"{base}/v1/chat/completions", json=payload, headers={"Authorization": f"Bearer {KEY}"},
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            body = await resp.read()
            if resp.status != 200:
                stats.fail(f"{what}: HTTP {resp.status} {body[:200]!r}")
                return
            if stream:
                events = sse_events(body)
                if not events or events[-1] != "[DONE]":
                    stats.fail(f"{what}: stream did not end with [DONE]: {body[-200:]!r}")
                    return
                text = ""
                for event in events[:-1]:
                    chunk = json.loads(event)
                    if "error" in chunk:
                        stats.fail(f"{what}: error event {event[:200]}")
                        return
                    for choice in chunk.get("choices", []):
                        text += choice.get("delta", {}).get("content") or ""
            else:
                text = json.loads(body)["choices"][0]["message"]["content"]
            if text != expected:
                stats.fail(f"{what}: text {text!r} != {expected!r}")
                return
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, IndexError) as exc:
        stats.fail(f"{what}: {type(exc).__name__}: {exc}")
        return
    stats.latencies.append(time.monotonic() - t0)


async def good_client(index: int, base: str, rate: float, stats: GoodStats, stop_at: Callable[[], bool],
                      timeout_s: float) -> None:
    """One client: a request every 1/rate s; odd clients open a new connection for each request."""
    import aiohttp

    rng = random.Random(index)
    connector = aiohttp.TCPConnector(limit=4, force_close=bool(index % 2))
    async with aiohttp.ClientSession(connector=connector) as session:
        next_at = time.monotonic() + rng.random() / rate
        n = 0
        while not stop_at():
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += 1.0 / rate
            alias = GOOD_ALIASES[(index + n) % len(GOOD_ALIASES)]
            n += 1
            await good_request(session, base, alias, rng.random() < 0.4, rng.randint(1, len(REPLY)), stats, timeout_s)
            if next_at < time.monotonic() - 5:  # fell behind (a slow answer): do not burst to catch up
                next_at = time.monotonic()


# ----------------------------------------------------------------------------------------
# Probes: each returns (passed, detail)
# ----------------------------------------------------------------------------------------

@dataclass
class Ctx:
    port: int  # the gateway's
    faults: Engine
    ha_victim: Engine
    args: argparse.Namespace
    stopped: set[int] = field(default_factory=set)  # pids SIGSTOPped right now

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


Outcome = tuple[bool, str]


def _fill(size: int, byte: bytes = b"a") -> Iterator[bytes]:
    while True:
        yield byte * size


async def probe_endless_header(ctx: Ctx) -> Outcome:
    """A header line that never ends, sent as fast as the gateway reads. Pass: the gateway answers
    (431/400) or closes after at most a few MiB, within 30 s."""
    head = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: "
    got = await push(ctx.port, head, (b"a" * 16384 for _ in range(512)), bound_s=30.0)  # at most 8 MiB
    detail = f"status {got.status} {got.ended} after {got.sent / 1024:.0f} KiB in {got.seconds:.2f} s"
    if got.ended == "open":
        detail = f"no answer and still open after {got.sent / 1024:.0f} KiB of one header line ({got.seconds:.1f} s)"
    return got.ended != "open" and (got.status is None or got.status in (400, 413, 431)), detail


async def probe_many_headers(ctx: Ctx) -> Outcome:
    """1,000 headers of 1 KiB each (~1 MiB of head). Pass: 431/400 or a close, within 30 s."""
    head = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    lines = (b"X-Big-%d: %s\r\n" % (i, b"b" * 1024) for i in range(1000))
    got = await push(ctx.port, head, _chain(lines, [b"\r\n"]), bound_s=30.0)
    detail = f"status {got.status} {got.ended} after {got.sent / 1024:.0f} KiB in {got.seconds:.2f} s"
    return got.ended != "open" and (got.status is None or got.status in (400, 431)), detail


async def _slow_clients(ctx: Ctx, head: bytes, drip: Callable[[int], bytes], count: int) -> Outcome:
    """``count`` connections that send ``head`` then ``drip(i)`` every ``--drip-s``. Pass: the gateway
    closes every one of them within ``--slow-bound-s``."""
    bound, pace = ctx.args.slow_bound_s, ctx.args.drip_s

    async def one() -> tuple[float | None, int | None]:
        t0 = time.monotonic()
        try:
            reader, writer = await connect(ctx.port)
        except OSError:
            return None, None
        answer = asyncio.ensure_future(read_all(reader, 1 << 16))
        try:
            writer.write(head)
            i = 0
            while time.monotonic() - t0 < bound:
                done, _ = await asyncio.wait({answer}, timeout=pace)
                if done:
                    data, _ = answer.result()
                    return time.monotonic() - t0, status_of(data)
                try:
                    writer.write(drip(i))
                    await writer.drain()
                except (ConnectionError, OSError):
                    data, _ = await answer
                    return time.monotonic() - t0, status_of(data)
                i += 1
            return None, None
        finally:
            answer.cancel()
            writer.transport.abort()

    results = await asyncio.gather(*(one() for _ in range(count)))
    closed = [t for t, _ in results if t is not None]
    statuses = sorted({str(s) for t, s in results if t is not None})
    if len(closed) == count:
        return True, (f"all {count} closed by the gateway after {min(closed):.1f}-{max(closed):.1f} s "
                      f"(statuses {','.join(statuses)})")
    return False, f"{count - len(closed)} of {count} still open after {bound:.0f} s ({len(closed)} closed)"


async def probe_slowloris(ctx: Ctx) -> Outcome:
    """Slowloris: heads that never complete, one header line every few seconds."""
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    return await _slow_clients(ctx, head, lambda i: b"X-Slow-%d: 1\r\n" % i, ctx.args.slow_conns)


async def probe_slow_body(ctx: Ctx) -> Outcome:
    """Bodies that never finish: Content-Length 100000, one byte every few seconds."""
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode() +
            b"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"model\": \"chat\", ")
    return await _slow_clients(ctx, head, lambda i: b" ", max(1, ctx.args.slow_conns // 2))


async def one_exchange(port: int, raw: bytes, bound_s: float = 10.0) -> tuple[int | None, bytes, str]:
    """Send one raw request; read to EOF or ``bound_s``: (first status, all bytes, how it ended)."""
    reader, writer = await connect(port)
    try:
        writer.write(raw)
        await writer.drain()
        got = bytearray()
        try:
            data, ended = await asyncio.wait_for(read_all(reader, into=got), bound_s)
        except TimeoutError:
            data, ended = bytes(got), "open"
        return status_of(data), data, ended
    finally:
        writer.transport.abort()


async def answer_one(port: int, raw: bytes, bound_s: float = 10.0) -> tuple[int | None, dict[str, str], bytes]:
    """Send one request with ``Connection: close``; parse the answer."""
    raw = raw.replace(b"\r\nHost: 127.0.0.1\r\n", b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n", 1)
    status, data, _ = await one_exchange(port, raw, bound_s)
    return split_response(data) if status is not None else (None, {}, b"")


async def probe_deep_json(ctx: Ctx) -> Outcome:
    """Deeply nested JSON (100,000 levels of arrays, of objects, inside messages). Pass: a 400 for each,
    within 5 s, and the gateway still answers /healthz."""
    depth = 100_000
    bodies = {
        "arrays": '{"model": "chat", "messages": ' + "[" * depth + "]" * depth + "}",
        "objects": '{"model": "chat", "messages": [{"role": "user", "content": ' + '{"a": ' * depth + "1" + "}" * depth + "}]}",
        "top": "[" * depth + "]" * depth,
    }
    problems, seen = [], []
    for name, body in bodies.items():
        t0 = time.monotonic()
        status, _, _ = await answer_one(ctx.port, request_bytes(body), bound_s=10.0)
        seen.append(f"{name}:{status}")
        if status != 400 or time.monotonic() - t0 > 5.0:
            problems.append(f"{name} -> {status} in {time.monotonic() - t0:.1f} s")
    health, _, _ = await answer_one(ctx.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    if health != 200:
        problems.append(f"/healthz -> {health}")
    return not problems, "; ".join(problems) or " ".join(seen)


async def probe_pipelined_malformed(ctx: Ctx) -> Outcome:
    """A valid request with malformed ones pipelined behind it, in one write. Pass: the valid one is
    answered 200; the malformed one gets a 4xx or a close, never a 2xx; nothing after it is answered."""
    good = request_bytes(chat_body("chat"))
    after = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    variants = {
        "bad request line": b"GARBAGE\x00 / HTTP/9.9\r\n\r\n",
        "bad chunk size": (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"zz\r\nhello\r\n0\r\n\r\n"),
        "CL and TE": (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 30\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        "negative length": b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
        "bad header name": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\x01: x\r\n\r\n",
    }
    problems, seen = [], []
    for name, bad in variants.items():
        status, data, ended = await one_exchange(ctx.port, good + bad + after, bound_s=10.0)
        answers = [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
        seen.append(f"{name}:{'/'.join(map(str, answers))}:{ended}")
        if not answers or answers[0] != 200:
            problems.append(f"{name}: the valid request got {answers[:1] or 'nothing'}")
        elif ended == "open":
            problems.append(f"{name}: connection left open (answers {answers})")
        elif name != "CL and TE" and (len(answers) > 2 or (len(answers) == 2 and answers[1] < 400)):
            problems.append(f"{name}: answers {answers}")
        elif name == "CL and TE" and len(answers) > 2:  # RFC 9112: may be read as chunked, then the connection closes
            problems.append(f"{name}: the request after it was answered too ({answers})")
    return not problems, "; ".join(problems) or " ".join(seen)


async def engine_streams(ctx: Ctx) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{ctx.faults.url}/_soak/streams") as resp:
        return await resp.json()


async def wait_stream_end(ctx: Ctx, marker: str, bound_s: float, ended: dict[str, str]) -> tuple[str | None, float]:
    """Poll the engine until the ``long`` stream ``marker`` ended: (how, seconds), or (None, bound_s)."""
    t0 = time.monotonic()
    while True:
        found = await engine_streams(ctx)
        ended.update(found["ended"])
        if marker in ended:
            return ended.pop(marker), time.monotonic() - t0
        if time.monotonic() - t0 > bound_s:
            return None, bound_s
        await asyncio.sleep(0.25)


_ended: dict[str, str] = {}  # long streams that ended, seen by one probe while polling for another's


async def _open_long_stream(ctx: Ctx, marker: str, rcvbuf: int | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await connect(ctx.port, rcvbuf)
    writer.write(request_bytes(chat_body("long", marker, stream=True, max_tokens=None)))
    await writer.drain()
    got = b""
    while got.count(b"data: ") < 2:
        piece = await asyncio.wait_for(reader.read(16384), 10.0)
        if not piece:
            raise ConnectionError(f"stream closed early: {got[:200]!r}")
        got += piece
    return reader, writer


async def probe_stalled_reader(ctx: Ctx) -> Outcome:
    """A streaming client that stops reading (small receive buffer) on a ~64 MiB stream. Pass: the
    gateway gives the client up and closes the engine's stream within write_timeout_s + 20 s,
    without reading the whole stream from the engine (which would mean buffering it)."""
    marker = f"stall-{os.urandom(4).hex()}"
    bound = SETTINGS["write_timeout_s"] + ctx.args.stall_grace_s
    reader, writer = await _open_long_stream(ctx, marker, rcvbuf=4096)
    try:
        how, seconds = await wait_stream_end(ctx, marker, bound, _ended)
    finally:
        writer.transport.abort()
    if how is None:
        return False, f"the gateway still held the stream {bound:.0f} s after its client stopped reading"
    if how == "complete":
        return False, f"the engine's whole ~64 MiB stream was read by the gateway in {seconds:.1f} s (buffered)"
    return True, f"upstream stream closed {seconds:.1f} s after the client stopped reading"


async def probe_disconnect_midstream(ctx: Ctx) -> Outcome:
    """Clients that disconnect mid-stream (FIN, then RST). Pass: the engine's stream is cancelled
    within 5 s each time."""
    problems, seen = [], []
    for mode in ("close", "reset"):
        marker = f"gone-{mode}-{os.urandom(4).hex()}"
        reader, writer = await _open_long_stream(ctx, marker, rcvbuf=None)
        if mode == "reset":
            reset(writer)
        else:
            writer.close()
        how, seconds = await wait_stream_end(ctx, marker, 5.0, _ended)
        seen.append(f"{mode}: {how} in {seconds:.2f} s")
        if how != "cancelled":
            problems.append(f"{mode}: engine stream {how or 'still running'} after {seconds:.1f} s")
    return not problems, "; ".join(problems) or "; ".join(seen)


async def probe_invalid_keys(ctx: Ctx) -> Outcome:
    """Missing, wrong, non-Bearer, empty and 8 KB keys. Pass: each a 401 with an OpenAI-shaped error,
    within 2 s."""
    body = chat_body("chat")
    cases = {"missing": None, "wrong": "sk-wrong", "same length": "x" * len(KEY), "empty": "",
             "huge": "k" * 8000, "basic": None, "prefix": KEY[:-1], "suffix": KEY + "x"}
    problems = []
    for name, key in cases.items():
        raw = request_bytes(body, key=key or None)
        if name == "basic":
            raw = request_bytes(body, key=None, extra="Authorization: Basic " + "a" * 20 + "\r\n")
        elif name == "empty":
            raw = request_bytes(body, key=None, extra="Authorization: Bearer \r\n")
        t0 = time.monotonic()
        status, _, payload = await answer_one(ctx.port, raw, bound_s=10.0)
        if status != 401 or not is_openai_error(payload) or time.monotonic() - t0 > 2.0:
            problems.append(f"{name}: {status} in {time.monotonic() - t0:.2f} s")
    return not problems, "; ".join(problems) or f"{len(cases)} x 401"


async def probe_huge_body(ctx: Ctx) -> Outcome:
    """A 64 MiB body announced with Content-Length, and a chunked one that never ends. Pass: 413 (or a
    close) for each before much more than max_body_bytes went in, within 30 s."""
    limit = SETTINGS["max_body_bytes"]
    problems, seen = [], []
    start = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode() +
             b"\r\nContent-Type: application/json\r\n")
    head = start + b"Content-Length: %d\r\n\r\n" % (64 << 20)
    chunked = start + b"Transfer-Encoding: chunked\r\n\r\n"
    for name, first, pieces in (("content-length", head, _fill(65536, b" ")),
                                ("chunked", chunked, (b"10000\r\n" + b" " * 65536 + b"\r\n" for _ in iter(int, 1)))):
        got = await push(ctx.port, first, pieces, bound_s=30.0)
        seen.append(f"{name}: {got.status} {got.ended} after {got.sent >> 20} MiB")
        # Kernel buffers on loopback hold several MiB that the gateway never read: allow 16 MiB + the limit.
        if got.ended == "open" or got.status not in (None, 413) or got.sent > limit + (16 << 20):
            problems.append(f"{name}: status {got.status}, {got.ended} after {got.sent >> 20} MiB in {got.seconds:.1f} s")
    return not problems, "; ".join(problems) or "; ".join(seen)


async def _fault(ctx: Ctx, alias: str, stream: bool) -> tuple[int | None, dict[str, str], bytes, float]:
    t0 = time.monotonic()
    status, headers, body = await answer_one(ctx.port, request_bytes(chat_body(alias, stream=stream)), bound_s=60.0)
    return status, headers, body, time.monotonic() - t0


async def _expect_error(ctx: Ctx, alias: str) -> Outcome:
    """Pass: a 5xx with an OpenAI-shaped JSON error, streaming or not, within 30 s."""
    problems, seen = [], []
    for stream in (False, True):
        status, headers, body, seconds = await _fault(ctx, alias, stream)
        seen.append(f"stream={int(stream)}: {status} in {seconds:.2f} s")
        if status is None or status < 500 or not is_openai_error(body) or seconds > 30:
            problems.append(f"stream={int(stream)}: {status} {headers.get('content-type', '')} {body[:80]!r} "
                            f"in {seconds:.2f} s")
    return not problems, "; ".join(problems) or "; ".join(seen)


async def probe_engine_500(ctx: Ctx) -> Outcome:
    """The engine answers 500."""
    return await _expect_error(ctx, "fault-500")


async def probe_engine_html(ctx: Ctx) -> Outcome:
    """The engine answers 200 with an HTML page."""
    return await _expect_error(ctx, "fault-html")


async def probe_engine_empty(ctx: Ctx) -> Outcome:
    """The engine answers 200 with an empty body."""
    return await _expect_error(ctx, "fault-empty")


async def probe_engine_nodone(ctx: Ctx) -> Outcome:
    """The engine's stream ends cleanly but without finish_reason or [DONE]. Pass: the client gets a
    5xx, or a stream whose last event is an error event; not a stream that looks complete or just stops."""
    status, headers, body, seconds = await _fault(ctx, "fault-nodone", True)
    events = sse_events(body)
    if status is not None and status >= 500:
        return True, f"{status} in {seconds:.2f} s"
    if status == 200 and events and events[-1] != "[DONE]" and "error" in json.loads(events[-1]):
        return True, f"error event at the end: {events[-1][:100]}"
    ending = events[-1][:60] if events else "no events"
    return False, f"{status}, {len(events)} events, ends with {ending!r} and no error event"


async def probe_engine_hang(ctx: Ctx) -> Outcome:
    """One of the two replicas of alias ``ha`` is SIGSTOPped for ``--hang-s``; requests to ``ha``
    meanwhile. Pass: every one answered 200 with the right text, each within request_timeout_s."""
    import aiohttp

    victim = ctx.ha_victim.proc.pid
    stats = GoodStats()
    os.kill(victim, signal.SIGSTOP)
    ctx.stopped.add(victim)
    t0 = time.monotonic()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            n = 0
            while time.monotonic() - t0 < ctx.args.hang_s:
                await good_request(session, ctx.base, "ha", bool(n % 2), len(REPLY), stats,
                                   SETTINGS["request_timeout_s"] + 5)
                n += 1
    finally:
        os.kill(victim, signal.SIGCONT)
        ctx.stopped.discard(victim)
    slowest = max(stats.latencies, default=0.0)
    detail = f"{stats.sent} requests over {time.monotonic() - t0:.0f} s stopped, {stats.failed} failed, slowest {slowest:.2f} s"
    if stats.failures:
        detail += f"; first: {stats.failures[0]}"
    return stats.failed == 0, detail


PROBES: dict[str, Callable[[Ctx], Awaitable[Outcome]]] = {
    "endless_header": probe_endless_header,
    "many_headers": probe_many_headers,
    "slowloris": probe_slowloris,
    "slow_body": probe_slow_body,
    "deep_json": probe_deep_json,
    "pipelined_malformed": probe_pipelined_malformed,
    "stalled_reader": probe_stalled_reader,
    "disconnect_midstream": probe_disconnect_midstream,
    "invalid_keys": probe_invalid_keys,
    "huge_body": probe_huge_body,
    "engine_500": probe_engine_500,
    "engine_html": probe_engine_html,
    "engine_empty": probe_engine_empty,
    "engine_nodone": probe_engine_nodone,
    "engine_hang": probe_engine_hang,
}


@dataclass
class ProbeRecord:
    runs: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0  # the probe's own code raised (counted as failed too): a bug in the soak
    seconds: float = 0.0
    last_pass: str = ""
    first_fail: str = ""
    last_fail: str = ""


async def run_probe(name: str, ctx: Ctx, records: dict[str, ProbeRecord]) -> None:
    record = records[name]
    t0 = time.monotonic()
    try:
        ok, detail = await PROBES[name](ctx)
    except asyncio.CancelledError:
        raise
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:  # the gateway misbehaved on the wire
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a bug in the probe: reported (and the smoke test fails on it)
        ok, detail = False, f"probe raised {type(exc).__name__}: {exc}"
        record.errors += 1
    record.runs += 1
    record.seconds += time.monotonic() - t0
    if ok:
        record.passed += 1
        record.last_pass = detail
    else:
        record.failed += 1
        record.first_fail = record.first_fail or detail
        record.last_fail = detail


# ----------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------

@dataclass
class Sample:
    t: float  # seconds since the soak phase began (negative: warm-up)
    rss_mb: float
    fds: int
    phase: str


async def soak(args: argparse.Namespace, gateway: subprocess.Popen, ctx: Ctx) -> dict[str, Any]:
    good = GoodStats()
    records = {name: ProbeRecord() for name in args.probes}
    samples: list[Sample] = []
    t_soak = time.monotonic() + args.warmup_s
    phase = "warmup"
    stop_good = False
    died: list[str] = []

    def sample() -> Sample | None:
        if gateway.poll() is not None:
            died.append(f"gateway exited with {gateway.returncode}")
            return None
        rss, fds = proc_sample(gateway.pid)
        s = Sample(round(time.monotonic() - t_soak, 2), rss, fds, phase)
        samples.append(s)
        return s

    async def sampler() -> None:
        while True:
            sample()
            await asyncio.sleep(args.sample_s)

    rate = args.good_rps / args.good_clients
    clients = [asyncio.ensure_future(good_client(i, ctx.base, rate, good, lambda: stop_good, args.good_timeout_s))
               for i in range(args.good_clients)]
    sampling = asyncio.ensure_future(sampler())
    # Warm-up: good traffic, and every alias and engine path touched once (pools, caches), then the start sample.
    for alias in ("fault-500", "fault-html", "fault-empty", "ha"):
        await answer_one(ctx.port, request_bytes(chat_body(alias)), bound_s=30.0)
    await probe_disconnect_midstream(ctx)
    await asyncio.sleep(max(0.0, t_soak - time.monotonic()))
    phase = "soak"
    start = sample()
    deadline = time.monotonic() + args.minutes * 60
    running: dict[str, asyncio.Future[None]] = {}
    print(f"soak: {args.minutes:g} min, probes in rotation every {args.probe_gap_s:g} s, "
          f"{args.good_clients} good clients at {args.good_rps:g} req/s", flush=True)
    last_report = time.monotonic()
    try:
        while time.monotonic() < deadline and not died:
            if not args.probes:  # good traffic only: a baseline
                await asyncio.sleep(args.probe_gap_s)
                if gateway.poll() is not None:
                    died.append(f"gateway exited with {gateway.returncode}")
            for name in args.probes:
                if time.monotonic() >= deadline or died:
                    break
                task = running.get(name)
                if task is None or task.done():
                    running[name] = asyncio.ensure_future(run_probe(name, ctx, records))
                await asyncio.sleep(args.probe_gap_s)
                if gateway.poll() is not None:
                    died.append(f"gateway exited with {gateway.returncode}")
                if time.monotonic() - last_report > 60:
                    last_report = time.monotonic()
                    s = samples[-1]
                    print(f"  t={s.t:5.0f} s  RSS {s.rss_mb:6.1f} MB  fds {s.fds:4d}  good {good.sent} sent "
                          f"{good.failed} failed  probes {sum(r.runs for r in records.values())} run "
                          f"{sum(r.failed for r in records.values())} failed", flush=True)
    finally:
        cut = [name for name, task in running.items() if not task.done()]
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        for pid in list(ctx.stopped):
            os.kill(pid, signal.SIGCONT)
    # Cool-down: good traffic only, then the end sample; then stop the clients.
    phase = "cooldown"
    await asyncio.sleep(args.cooldown_s)
    end = sample()
    stop_good = True
    await asyncio.gather(*clients, return_exceptions=True)
    sampling.cancel()
    inflight = await gateway_inflight(ctx)
    return {"good": good, "records": records, "samples": samples, "start": start, "end": end, "cut": cut,
            "died": died, "inflight_at_end": inflight}


async def gateway_inflight(ctx: Ctx) -> float | None:
    try:
        status, _, body = await answer_one(ctx.port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    except OSError:
        return None
    match = re.search(rb"^vilms_gateway_in_flight (\S+)", body, re.M)
    return float(match.group(1)) if status == 200 and match else None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _shape(detail: str) -> str:
    """A probe's detail without its numbers: failures that differ only in timings read as one."""
    return re.sub(r"[\d.]+", "#", detail)


def report(args: argparse.Namespace, result: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    good: GoodStats = result["good"]
    samples: list[Sample] = [s for s in result["samples"] if s.phase != "warmup"]
    start, end = result["start"], result["end"]
    checks: list[tuple[str, str, bool]] = []
    out: dict[str, Any] = {"minutes": args.minutes, "settings": SETTINGS}
    print(f"\n=== gateway over {args.minutes:g} min (samples every {args.sample_s:g} s) ===")
    if start is None or end is None or result["died"]:
        checks.append(("gateway alive to the end", "; ".join(result["died"]) or "no samples", False))
    else:
        half = [s for s in samples if s.phase == "soak" and s.t >= args.minutes * 30]
        rss_slope = theil_sen([(s.t / 60, s.rss_mb) for s in half])
        fd_slope = theil_sen([(s.t / 60, float(s.fds)) for s in half])
        rss_max, fd_max = max(s.rss_mb for s in samples), max(s.fds for s in samples)
        print(f"RSS  start {start.rss_mb:6.1f} MB  end {end.rss_mb:6.1f} MB  max {rss_max:6.1f} MB  "
              f"slope {rss_slope:+.2f} MB/min (second half; overall {(end.rss_mb - start.rss_mb) / args.minutes:+.2f})")
        print(f"fds  start {start.fds:6d}     end {end.fds:6d}     max {fd_max:6d}     "
              f"slope {fd_slope:+.2f} fds/min (second half; overall {(end.fds - start.fds) / args.minutes:+.2f})")
        checks.append((f"RSS slope <= {args.rss_slope_max:g} MB/min", f"{rss_slope:+.2f} MB/min", rss_slope <= args.rss_slope_max))
        checks.append((f"fd slope <= {args.fd_slope_max:g} fds/min", f"{fd_slope:+.2f} fds/min", fd_slope <= args.fd_slope_max))
        checks.append((f"fds end - start <= {args.fd_drift_max}", f"{end.fds - start.fds:+d}", end.fds - start.fds <= args.fd_drift_max))
        out.update(rss_mb={"start": start.rss_mb, "end": end.rss_mb, "max": rss_max, "slope_per_min": rss_slope},
                   fds={"start": start.fds, "end": end.fds, "max": fd_max, "slope_per_min": fd_slope})
    lat = good.latencies
    print(f"good requests: {good.sent} sent ({good.streamed} streaming; "
          f"{', '.join(f'{a} {n}' for a, n in sorted(good.by_alias.items()))}), {good.failed} failed; "
          f"latency p50 {percentile(lat, 0.5) * 1000:.1f} ms, p99 {percentile(lat, 0.99) * 1000:.1f} ms, "
          f"max {max(lat, default=0) * 1000:.0f} ms")
    for failure in good.failures[:5]:
        print(f"  failed: {failure}")
    checks.append(("0 good requests failed", f"{good.failed} of {good.sent}", good.failed == 0 and good.sent > 0))
    print(f"in flight at the end (after every client stopped): {result['inflight_at_end']}")
    print("\n=== probes ===")
    records: dict[str, ProbeRecord] = result["records"]
    probe_ok = True
    for name, r in records.items():
        verdict = "FAIL" if r.failed else ("PASS" if r.runs else "----")
        probe_ok &= not r.failed
        note = r.last_fail if r.failed else r.last_pass
        if r.failed and _shape(r.first_fail) != _shape(r.last_fail):
            note += f" (first: {r.first_fail})"
        extra = " (one more cut short at the end)" if name in result["cut"] else ""
        print(f"{verdict}  {name:21s} {r.passed:3d}/{r.runs:<3d} passed{extra}  {note}")
    if args.strict:
        checks.append(("every probe passed (--strict)", "", probe_ok))
    print("\n=== verdict ===")
    for name, value, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name:32s} {value}")
    out.update(good={k: v for k, v in asdict(good).items() if k != "latencies"},
               good_latency_ms={"p50": percentile(lat, 0.5) * 1000, "p99": percentile(lat, 0.99) * 1000,
                                "max": max(lat, default=0) * 1000},
               probes={k: asdict(v) for k, v in records.items()}, cut_short=result["cut"],
               inflight_at_end=result["inflight_at_end"], samples=[asdict(s) for s in result["samples"]],
               checks=[{"name": n, "value": v, "ok": ok} for n, v, ok in checks])
    return (0 if all(ok for _, _, ok in checks) else 1), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--good-clients", type=int, default=8)
    parser.add_argument("--good-rps", type=float, default=50.0, help="good requests per second, all clients together")
    parser.add_argument("--good-timeout-s", type=float, default=60.0)
    parser.add_argument("--probes", default=",".join(PROBES), help="comma-separated, in rotation order")
    parser.add_argument("--probe-gap-s", type=float, default=1.0, help="pause between starting two probes")
    parser.add_argument("--slow-conns", type=int, default=40, help="slowloris connections (half as many slow bodies)")
    parser.add_argument("--drip-s", type=float, default=5.0, help="slow clients send a byte or a line this often")
    parser.add_argument("--slow-bound-s", type=float, default=90.0, help="slow clients expect to be cut off by then")
    parser.add_argument("--stall-grace-s", type=float, default=20.0, help="beyond write_timeout_s, for a stalled reader")
    parser.add_argument("--hang-s", type=float, default=20.0, help="how long a replica stays SIGSTOPped")
    parser.add_argument("--warmup-s", type=float, default=15.0)
    parser.add_argument("--cooldown-s", type=float, default=15.0)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--rss-slope-max", type=float, default=1.0, help="MB/min")
    parser.add_argument("--fd-slope-max", type=float, default=1.0, help="fds/min")
    parser.add_argument("--fd-drift-max", type=int, default=8, help="end minus start, in fds")
    parser.add_argument("--strict", action="store_true", help="a failing probe fails the run too")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work folder (logs, routes)")
    if len(sys.argv) > 1 and sys.argv[1] == "engine":
        engine = argparse.ArgumentParser(prog="soak.py engine", description="a fault-injecting fake vLLM")
        engine.add_argument("--port", type=int, required=True)
        run_engine(engine.parse_args(sys.argv[2:]).port)
        return 0
    args = parser.parse_args()
    args.probes = [p for p in args.probes.split(",") if p]
    unknown = [p for p in args.probes if p not in PROBES]
    if unknown:
        parser.error(f"unknown probes: {', '.join(unknown)} (known: {', '.join(PROBES)})")
    work = Path(tempfile.mkdtemp(prefix="vilms-soak-"))
    engines: dict[str, Engine] = {}
    gateway: subprocess.Popen | None = None
    try:
        for name in ("main-a", "main-b", "side", "ha-a", "ha-b", "faults"):
            engines[name] = start_engine(name, work)
        routes = work / "routes.yaml"
        write_routes(routes, engines)
        port = free_port()
        log = work / "gateway.log"
        gateway = spawn([sys.executable, "-m", "vilms", "serve", "--routes", str(routes), "--port", str(port), "--quiet"],
                        env={KEY_ENV: KEY}, log=log)
        if not wait_http(f"http://127.0.0.1:{port}/healthz", 30):
            print(f"the gateway did not start; see {log}:\n{log.read_text()[-2000:]}")
            return 2
        print(f"gateway pid {gateway.pid} on :{port}; engines {', '.join(f'{n}:{e.port}' for n, e in engines.items())}; "
              f"work folder {work}", flush=True)
        ctx = Ctx(port, engines["faults"], engines["ha-a"], args)
        result = asyncio.run(soak(args, gateway, ctx))
        code, out = report(args, result)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
        return code
    finally:
        stop(gateway)
        for engine in engines.values():
            stop(engine.proc)
        if not args.keep_logs:
            for path in work.iterdir():
                path.unlink()
            work.rmdir()


if __name__ == "__main__":
    sys.exit(main())
