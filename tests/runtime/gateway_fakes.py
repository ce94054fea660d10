"""Fake Ollama and vLLM servers on 127.0.0.1 that speak the real wire formats.

Field names follow the real servers: Ollama's native ``/api/chat`` (NDJSON stream of
``{"model", "created_at", "message", "done"}`` lines ending with ``done_reason`` and
the ``*_count``/``*_duration`` stats), ``/api/generate``, ``/api/embed``, ``/api/tags``;
vLLM's OpenAI server (``chat.completion`` JSON and ``chat.completion.chunk`` SSE ending
in ``data: [DONE]``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/models``, ``/health``).

Fault injection (``server.fault``): ``None`` (healthy), ``"500"`` (HTTP 500),
``"hang"`` (never answers; the handler records that it was cancelled), ``"drop"``
(streams two pieces then cuts the connection; non-streaming: a truncated body),
``"error_line"`` (Ollama only: an ``{"error": ...}`` line before any token).
``await server.refuse()`` closes the port (connection refused); ``await server.restore()``
opens it again. Each server records every request (path, JSON body) in ``requests``.
A server listens on ``host`` (any 127.0.0.x: several "pods" share one port, as behind a
headless Service).

:class:`FakeVLLM` also loads LoRA adapters at run time like vLLM with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` (vllm/entrypoints/openai/serving_models.py):
``/v1/load_lora_adapter`` (200 text, 400 "has already been loaded", 404 "No adapter found"),
``/v1/unload_lora_adapter`` (200 text, 404 "cannot be found"), LoRA cards with a ``parent``
in ``/v1/models``; ``restart()`` forgets them, ``hold_loads()`` makes loads wait.
:class:`FakeDNS` is a DNS server (UDP, records encoded by dnslib) with faults.

Also runnable for the benchmark: ``python gateway_fakes.py vllm --port 9001``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

REPLY = ["Hello", " from", " the", " fake", " server", "."]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Seen:
    path: str
    body: dict[str, Any]
    authorization: str | None = None


@dataclass
class FakeServer:
    """Shared machinery: start/stop, request log, faults, cancellation tracking."""

    models: tuple[str, ...] = ("qwen2.5-1.5b",)
    host: str = "127.0.0.1"
    reply: list[str] = field(default_factory=lambda: list(REPLY))
    chunk_delay_s: float = 0.0
    fault: str | None = None
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    cancelled: int = 0
    inflight: int = 0
    max_inflight: int = 0
    streaming: asyncio.Event = field(default_factory=asyncio.Event)  # set when a paced answer starts
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def build_app(self) -> web.Application:  # pragma: no cover - overridden
        raise NotImplementedError

    async def start(self) -> "FakeServer":
        self._runner = web.AppRunner(self.build_app(), access_log=None, handler_cancellation=True,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        await self._listen()
        return self

    async def _listen(self) -> None:
        assert self._runner is not None
        if not self.port:
            self.port = free_port()
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()

    async def refuse(self) -> None:
        """Close the listening socket: new connections are refused."""
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def restore(self) -> None:
        if self._site is None:
            await self._listen()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _enter(self, request: web.Request) -> dict[str, Any]:
        body = await request.json() if request.can_read_body else {}
        self.requests.append(Seen(request.path, body, request.headers.get("Authorization")))
        return body

    async def _hang(self) -> web.Response:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return web.Response(status=500)  # pragma: no cover

    async def _paced(self, response: web.StreamResponse, pieces: list[bytes], drop_after: int | None) -> None:
        """Write pieces one by one; count a cancellation if the client goes away."""
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        self.streaming.set()
        try:
            for index, piece in enumerate(pieces):
                if drop_after is not None and index == drop_after:
                    assert response._req is not None
                    transport = response._req.transport
                    if transport is not None:
                        transport.abort()  # cut the connection mid-stream
                    return
                await response.write(piece)
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled += 1
            raise
        finally:
            self.inflight -= 1

    @staticmethod
    async def _truncated(request: web.Request, body: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json",
                                               "Content-Length": str(len(body) + 100)})
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.abort()
        return response


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class FakeOllama(FakeServer):
    """Ollama's native API (what the gateway speaks to Ollama)."""

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_post("/api/embed", self.embed)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/version", self.version)
        return app

    def _unknown(self, model: str) -> web.Response | None:
        if model in self.models:
            return None
        return web.json_response({"error": f'model "{model}" not found, try pulling it first'}, status=404)

    def _stats(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", [])) or \
            len(str(body.get("prompt", "")).split())
        return {"total_duration": 4883583458, "load_duration": 1334875, "prompt_eval_count": prompt,
                "prompt_eval_duration": 342546000, "eval_count": len(self._tokens(body)),
                "eval_duration": 4535599000}

    def _tokens(self, body: dict[str, Any]) -> list[str]:
        limit = (body.get("options") or {}).get("num_predict")
        return self.reply[:limit] if isinstance(limit, int) and limit >= 0 else self.reply

    def _done_reason(self, body: dict[str, Any]) -> str:
        limit = (body.get("options") or {}).get("num_predict")
        return "length" if isinstance(limit, int) and 0 <= limit < len(self.reply) else "stop"

    async def _ndjson(self, request: web.Request, body: dict[str, Any], lines: list[dict[str, Any]]) -> web.StreamResponse:
        if self.fault == "error_line":
            lines = [{"error": "an error was encountered while running the model: unexpected EOF"}]
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        pieces = [json.dumps(line).encode() + b"\n" for line in lines]
        await self._paced(response, pieces, 2 if self.fault == "drop" else None)
        return response

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._enter(request)
        if self.fault == "500":
            return web.json_response({"error": "llama runner process has terminated: exit status 2"}, status=500)
        if self.fault == "hang":
            return await self._hang()
        unknown = self._unknown(body.get("model", ""))
        if unknown is not None:
            return unknown
        model, tokens = body["model"], self._tokens(body)
        final = {"model": model, "created_at": _now_iso(), "message": {"role": "assistant", "content": ""},
                 "done_reason": self._done_reason(body), "done": True, **self._stats(body)}
        if body.get("stream", True):
            lines = [{"model": model, "created_at": _now_iso(), "message": {"role": "assistant", "content": t},
                      "done": False} for t in tokens]
            return await self._ndjson(request, body, [*lines, final])
        final["message"]["content"] = "".join(tokens)
        if self.fault == "drop":
            return await self._truncated(request, json.dumps(final).encode())
        return web.json_response(final)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await self._enter(request)
        if self.fault == "500":
            return web.json_response({"error": "llama runner process has terminated"}, status=500)
        if self.fault == "hang":
            return await self._hang()
        unknown = self._unknown(body.get("model", ""))
        if unknown is not None:
            return unknown
        model, tokens = body["model"], self._tokens(body)
        final = {"model": model, "created_at": _now_iso(), "response": "", "done": True,
                 "done_reason": self._done_reason(body), "context": [1, 2, 3], **self._stats(body)}
        if body.get("stream", True):
            lines = [{"model": model, "created_at": _now_iso(), "response": t, "done": False} for t in tokens]
            return await self._ndjson(request, body, [*lines, final])
        final["response"] = "".join(tokens)
        return web.json_response(final)

    async def embed(self, request: web.Request) -> web.Response:
        body = await self._enter(request)
        if self.fault == "500":
            return web.json_response({"error": "embedding failed"}, status=500)
        unknown = self._unknown(body.get("model", ""))
        if unknown is not None:
            return unknown
        items = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = [[round(0.01 * (i + 1) * (j + 1), 4) for j in range(body.get("dimensions", 4))]
                   for i in range(len(items))]
        return web.json_response({"model": body["model"], "embeddings": vectors, "total_duration": 14143917,
                                  "load_duration": 1019500, "prompt_eval_count": 8 * len(items)})

    async def tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [
            {"name": f"{m}:latest", "model": f"{m}:latest", "modified_at": "2026-11-01T10:00:00.000000Z",
             "size": 986061892, "digest": "a" * 64,
             "details": {"parent_model": "", "format": "gguf", "family": "qwen2", "families": ["qwen2"],
                         "parameter_size": "1.5B", "quantization_level": "Q4_K_M"}} for m in self.models]})

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.13.5"})


class FakeVLLM(FakeServer):
    """vLLM's OpenAI-compatible server, with runtime LoRA loading."""

    def __init__(self, *args: Any, adapter_paths: tuple[str, ...] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.loras: dict[str, str] = {}  # loaded adapters: name -> path
        self.adapter_paths = adapter_paths  # paths a load finds (None: any)
        self._gate: asyncio.Event | None = None
        self.load_asked = asyncio.Event()  # set when a load request arrives
        self.models_body: bytes | None = None  # a broken or hostile /v1/models answer, sent as is

    def restart(self) -> None:
        """The engine restarted: runtime-loaded adapters are gone."""
        self.loras.clear()

    def hold_loads(self) -> None:
        self._gate = asyncio.Event()
        self.load_asked = asyncio.Event()

    def release_loads(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    def adapter_requests(self, name: str) -> int:
        return sum(1 for r in self.requests if r.path.startswith("/v1/chat") and r.body.get("model") == name)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/load_lora_adapter", self.load_lora)
        app.router.add_post("/v1/unload_lora_adapter", self.unload_lora)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_get("/health", self.health)
        return app

    def _error(self, status: int, message: str, kind: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": status}},
                                 status=status)

    def _check(self, body: dict[str, Any]) -> web.Response | None:
        if self.fault == "500":
            return self._error(500, "EngineCore encountered an issue.", "InternalServerError")
        model = body.get("model")
        if model not in self.models and model not in self.loras:
            return self._error(404, f"The model `{model}` does not exist.", "NotFoundError")
        return None

    def _tokens(self, body: dict[str, Any]) -> list[str]:
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        return self.reply[:limit] if isinstance(limit, int) else self.reply

    def _usage(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = 10
        completion = len(self._tokens(body))
        return {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion,
                "prompt_tokens_details": None}

    async def _sse(self, request: web.Request, body: dict[str, Any], chunks: list[dict[str, Any]]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        pieces = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]
        await self._paced(response, pieces, 2 if self.fault == "drop" else None)
        return response

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._enter(request)
        if self.fault == "hang":
            return await self._hang()
        error = self._check(body)
        if error is not None:
            return error
        ident, created, model, tokens = f"chatcmpl-{os.urandom(8).hex()}", int(time.time()), body["model"], \
            self._tokens(body)
        reason = "length" if len(tokens) < len(self.reply) else "stop"
        if body.get("stream"):
            def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
                return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            chunks = [chunk({"role": "assistant", "content": ""}, None)]
            chunks += [chunk({"content": t}, None) for t in tokens]
            chunks.append(chunk({}, reason))
            if (body.get("stream_options") or {}).get("include_usage"):
                chunks.append({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [], "usage": self._usage(body)})
            return await self._sse(request, body, chunks)
        payload = {"id": ident, "object": "chat.completion", "created": created, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "reasoning_content": None,
                                                        "content": "".join(tokens), "tool_calls": []},
                                "logprobs": None, "finish_reason": reason, "stop_reason": None}],
                   "usage": self._usage(body), "prompt_logprobs": None}
        if self.fault == "drop":
            return await self._truncated(request, json.dumps(payload).encode())
        return web.json_response(payload)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._enter(request)
        if self.fault == "hang":
            return await self._hang()
        error = self._check(body)
        if error is not None:
            return error
        ident, created, model, tokens = f"cmpl-{os.urandom(8).hex()}", int(time.time()), body["model"], \
            self._tokens(body)
        reason = "length" if len(tokens) < len(self.reply) else "stop"
        if body.get("stream"):
            chunks = [{"id": ident, "object": "text_completion", "created": created, "model": model,
                       "choices": [{"index": 0, "text": t, "logprobs": None,
                                    "finish_reason": reason if i == len(tokens) - 1 else None,
                                    "stop_reason": None}]} for i, t in enumerate(tokens)]
            return await self._sse(request, body, chunks)
        return web.json_response({"id": ident, "object": "text_completion", "created": created, "model": model,
                                  "choices": [{"index": 0, "text": "".join(tokens), "logprobs": None,
                                               "finish_reason": reason, "stop_reason": None,
                                               "prompt_logprobs": None}],
                                  "usage": self._usage(body)})

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self._enter(request)
        error = self._check(body)
        if error is not None:
            return error
        items = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"index": i, "object": "embedding", "embedding": [0.1 * (i + 1)] * 4} for i in range(len(items))]
        return web.json_response({"id": f"embd-{os.urandom(8).hex()}", "object": "list", "created": int(time.time()),
                                  "model": body["model"], "data": data,
                                  "usage": {"prompt_tokens": 8, "total_tokens": 8, "completion_tokens": 0,
                                            "prompt_tokens_details": None}})

    async def list_models(self, request: web.Request) -> web.Response:
        if self.models_body is not None:
            return web.Response(body=self.models_body, content_type="application/json")
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "vllm", "root": m, "parent": None,
             "max_model_len": 8192} for m in self.models] + [
            {"id": name, "object": "model", "created": 0, "owned_by": "vllm", "root": path,
             "parent": self.models[0], "max_model_len": None} for name, path in self.loras.items()]})

    async def load_lora(self, request: web.Request) -> web.Response:
        body = await self._enter(request)
        self.load_asked.set()
        if self._gate is not None:
            await self._gate.wait()
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return self._error(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        if name in self.loras:
            return self._error(400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput")
        if self.adapter_paths is not None and path not in self.adapter_paths:
            return self._error(404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError")
        self.loras[name] = path
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def unload_lora(self, request: web.Request) -> web.Response:
        body = await self._enter(request)
        name = body.get("lora_name")
        if not name:
            return self._error(400, "either 'lora_name' and 'lora_int_id' needs to be provided.", "InvalidUserInput")
        if name not in self.loras:
            return self._error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del self.loras[name]
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")

    async def health(self, request: web.Request) -> web.Response:
        return web.Response()


class FakeDNS(asyncio.DatagramProtocol):
    """An authoritative DNS server on 127.0.0.1 (UDP): ``records`` maps a name (with its final
    dot) to its addresses (A or AAAA by form). ``fault``: None, ``"servfail"``, ``"nxdomain"``,
    ``"silent"`` (never answers), ``"cname_loop"`` (a CNAME chain that points back to itself).
    ``ttl`` is put on every record. ``queries`` counts questions."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.fault: str | None = None
        self.ttl = 5
        self.queries = 0
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> "FakeDNS":
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.port = self._transport.get_extra_info("sockname")[1]
        return self

    def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, A, DNSRecord

        self.queries += 1
        if self.fault == "silent":
            return
        query = DNSRecord.parse(data)
        reply = query.reply()
        name = str(query.q.qname)
        if self.fault == "servfail":
            reply.header.rcode = RCODE.SERVFAIL
        elif self.fault == "nxdomain" or name not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
        elif self.fault == "cname_loop":
            for i in range(40):  # name -> a0 -> a1 -> ... -> a39 -> name
                target = name if i == 39 else f"a{i + 1}.{name}"
                reply.add_answer(RR(name if i == 0 else f"a{i}.{name}", QTYPE.CNAME, rdata=CNAME(target), ttl=self.ttl))
        else:
            want = query.q.qtype
            for address in self.records[name]:
                if ":" in address and want == QTYPE.AAAA:
                    reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(address), ttl=self.ttl))
                elif ":" not in address and want == QTYPE.A:
                    reply.add_answer(RR(name, QTYPE.A, rdata=A(address), ttl=self.ttl))
        assert self._transport is not None
        self._transport.sendto(reply.pack(), addr)


def _main() -> None:
    parser = argparse.ArgumentParser(description="Run a fake vLLM or Ollama server (for benchmarks).")
    parser.add_argument("kind", choices=("vllm", "ollama"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", default=None)
    args = parser.parse_args()
    cls = FakeVLLM if args.kind == "vllm" else FakeOllama
    server = cls(models=tuple(args.model or ["qwen2.5-1.5b"]), port=args.port)
    # Benchmarks do not need a request log that grows without bound.
    server._enter = _no_log(server)  # type: ignore[method-assign]
    web.run_app(server.build_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


def _no_log(server: FakeServer):  # type: ignore[no-untyped-def]
    async def enter(request: web.Request) -> dict[str, Any]:
        return await request.json()
    return enter


if __name__ == "__main__":
    sys.exit(_main())
