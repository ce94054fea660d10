"""Helpers for the gateway tests: routes files, a gateway on a free port, an HTTP client.

Tests are plain functions that run one coroutine with :func:`run`; fakes, the gateway
and the client all live on that one event loop (no pytest-asyncio needed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from gateway_fakes import free_port

from vilms.compiler.contracts.contract import API_VERSION
from vilms.compiler.contracts.routes import GatewaySettings, KeyScope, Route
from vilms.runtime.gateway.server import serve
from vilms.runtime.gateway.state import GatewayState


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def make_route(**fields: Any) -> Route:
    """A Route for unit tests: fields not given take plain values (the contract itself has no defaults)."""
    full: dict[str, Any] = {"name": "chat", "backend": "b", "model": "m", "adapter": None, "context": 8192,
                            "max_output_tokens": 2048, "system": None, "params": {}, "fallbacks": (), "task": "chat"}
    full.update(fields)
    return Route(**full)


def gateway_settings(**fields: Any) -> GatewaySettings:
    """GatewaySettings for unit tests: the defaults of :func:`routes_doc`; ``keys`` as
    ``{name: {"env": ..., "aliases": ..., "rpm": ..., "tpm": ...}}`` (missing fields None)."""
    settings = routes_doc({}, {}, **fields)["gateway"]
    settings["keys"] = {name: KeyScope(name=name, **{"aliases": None, "rpm": None, "tpm": None, **spec})
                        for name, spec in settings["keys"].items()}
    return GatewaySettings(**settings)


def routes_doc(backends: dict[str, Any], aliases: dict[str, Any], **gateway: Any) -> dict[str, Any]:
    """A routes document in the compiler's shape; alias fields not given get defaults."""
    settings = {"api_keys_env": None, "keys": {}, "ops_key_env": None, "retries": 2, "connect_timeout_s": 1.0,
                "read_timeout_s": 5.0, "first_byte_timeout_s": 5.0, "request_timeout_s": 30.0, "write_timeout_s": 5.0,
                "max_body_bytes": 1 << 20, "max_response_bytes": 16 << 20, "max_queue": 64, "cooldown_s": 30.0,
                "eject_after": 5, "discovery_interval_s": 5.0, "balance": "round_robin", "on_overlong_prompt": "reject", "telemetry": None}
    settings.update(gateway)
    full_aliases = {}
    for name, alias in aliases.items():
        if alias.get("adapter"):
            alias = {**alias, "adapter": {"run": None, "path": None, "slot": None, **alias["adapter"]}}
        full = {"adapter": None, "context": 8192, "max_output_tokens": 2048, "system": None, "params": {},
                "fallbacks": [], "task": "chat"}
        full.update(alias)
        full_aliases[name] = full
    full_backends = {bid: {"api_key_env": None, "discovery": None, "runtime_lora": False, **b} for bid, b in backends.items()}
    return {"apiVersion": API_VERSION, "kind": "GatewayRoutes", "deployment": "test",
            "hardware": {"name": "laptop", "kind": "cpu", "memory_bytes": 17179869184},
            "gateway": settings, "backends": full_backends, "aliases": full_aliases}


def write_routes(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=True))
    return path


@dataclass
class Gateway:
    url: str
    state: GatewayState
    client: aiohttp.ClientSession
    routes_file: Path

    async def post(self, path: str, body: dict[str, Any], **kw: Any) -> tuple[int, dict[str, str], Any]:
        async with self.client.post(self.url + path, json=body, **kw) as resp:
            raw = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            data = raw.decode() if "event-stream" in ctype else (await resp.json(content_type=None) if raw else None)
            return resp.status, dict(resp.headers), data

    async def get(self, path: str, **kw: Any) -> tuple[int, dict[str, str], Any]:
        async with self.client.get(self.url + path, **kw) as resp:
            ctype = resp.headers.get("Content-Type", "")
            data = await resp.text() if ctype.startswith("text/plain") else await resp.json(content_type=None)
            return resp.status, dict(resp.headers), data


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, doc: dict[str, Any], environ: dict[str, str] | None = None,
                  watch_interval_s: float = 3600.0, install_signals: bool = False) -> AsyncIterator[Gateway]:
    routes_file = write_routes(tmp_path / "routes.yaml", doc)
    state = GatewayState(routes_file, environ=environ if environ is not None else {})
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(state, "127.0.0.1", port, ready=ready, stop=stop,
                                     watch_interval_s=watch_interval_s, install_signals=install_signals))
    await asyncio.wait_for(ready.wait(), 10)
    async with aiohttp.ClientSession() as client:
        try:
            yield Gateway(f"http://127.0.0.1:{port}", state, client, routes_file)
        finally:
            stop.set()
            await task


def sse_events(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]
