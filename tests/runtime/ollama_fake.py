"""A fake Ollama that keeps models and blobs, for `vilms apply` on compose + Ollama.

It extends the gateway tests' :class:`FakeOllama` with the model-management API as Ollama
serves it (``server/routes.go``, ``server/create.go``; the wire shapes are Ollama's):

* ``HEAD /api/blobs/<digest>``: 200 when the blob is stored, 404 otherwise; 400 for a
  digest that is not ``sha256:<64 hex>``.
* ``POST /api/blobs/<digest>``: 200 when already stored (the body is not read), else the
  body is hashed as it streams in: 201 when it matches, 400 ``digest mismatch, expected
  …, got …`` when not (nothing is stored).
* ``POST /api/create``: the NDJSON progress stream (``stream`` defaults to true) ending
  in ``{"status": "success"}``; an unknown ``from`` streams ``pulling manifest`` then an
  error line (the fake has no registry), a missing adapter blob ``parsing GGUF`` then
  ``open …: no such file or directory``, a blob that is not GGUF ``supplied file was not in
  GGUF format``. Replacing a model removes the old model's layers no other model uses
  (Ollama prunes unless ``OLLAMA_NOPRUNE``).
* ``GET /api/tags`` lists the models (``name:tag``); ``DELETE /api/delete`` removes one
  (404 ``model '…' not found``) and prunes its layers.

Faults: ``fault="stall"`` makes ``/api/create`` send its first progress line and then
nothing. :func:`serving` runs a fake on its own thread and loop, for code that calls it
synchronously (the apply client) or from another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from gateway_fakes import FakeOllama, Seen

DIGEST = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
BLOBS_DIR = "/root/.ollama/models/blobs"


def full_name(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class Model:
    layers: tuple[str, ...]  # blob digests: base layers, then the adapter
    request: dict[str, Any]  # the create request that made it (empty for a pulled base)


@dataclass
class FakeOllamaModels(FakeOllama):
    blobs: dict[str, bytes] = field(default_factory=dict)
    store: dict[str, Model] = field(default_factory=dict)
    creates: list[dict[str, Any]] = field(default_factory=list)  # every /api/create body, in order

    def __post_init__(self) -> None:
        for name in self.models:  # the base models ollama-init created
            weights = f"GGUF weights of {name}".encode()
            digest = "sha256:" + hashlib.sha256(weights).hexdigest()
            self.blobs[digest] = weights
            self.store[full_name(name)] = Model((digest,), {})

    def build_app(self) -> web.Application:
        app = super().build_app()
        app.router.add_route("HEAD", "/api/blobs/{digest}", self.head_blob)
        app.router.add_post("/api/blobs/{digest}", self.post_blob)
        app.router.add_post("/api/create", self.create)
        app.router.add_delete("/api/delete", self.delete)
        return app

    def names(self) -> set[str]:
        return set(self.store)

    async def tags(self, request: web.Request) -> web.Response:
        self._log(request, {})
        return web.json_response({"models": [
            {"name": name, "model": name, "modified_at": "2026-11-01T10:00:00.000000Z",
             "size": sum(len(self.blobs[d]) for d in m.layers if d in self.blobs),
             "digest": hashlib.sha256(json.dumps(m.layers).encode()).hexdigest(),
             "details": {"parent_model": "", "format": "gguf", "family": "qwen2", "families": ["qwen2"],
                         "parameter_size": "1.5B", "quantization_level": "Q4_K_M"}}
            for name, m in sorted(self.store.items())]})

    def _log(self, request: web.Request, body: dict[str, Any]) -> None:
        self.requests.append(_seen(request, body))

    async def head_blob(self, request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        self._log(request, {})
        if not DIGEST.match(digest):
            return web.json_response({"error": "invalid digest format"}, status=400)
        if _canonical(digest) not in self.blobs:
            return web.json_response({"error": f'blob "{digest}" not found'}, status=404)
        return web.Response(status=200)

    async def post_blob(self, request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        self._log(request, {})
        if not DIGEST.match(digest):
            return web.json_response({"error": "invalid digest format"}, status=400)
        if _canonical(digest) in self.blobs:
            return web.Response(status=200)
        sha, data = hashlib.sha256(), bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            sha.update(chunk)
            data.extend(chunk)
        got = f"sha256:{sha.hexdigest()}"
        if got != _canonical(digest):
            return web.json_response({"error": f'digest mismatch, expected "{digest}", got "{got}"'}, status=400)
        self.blobs[got] = bytes(data)
        return web.Response(status=201)

    async def create(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "missing request body"}, status=400)
        self._log(request, body)
        self.creates.append(body)
        name = body.get("model") or body.get("name") or ""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(:[A-Za-z0-9._-]+)?", name):
            return web.json_response({"error": "invalid model name"}, status=400)
        adapters = body.get("adapters") or {}
        if any(not d for d in adapters.values()):
            return web.json_response({"error": "invalid digest format"}, status=400)
        lines: list[dict[str, Any]] = []
        error: str | None = None
        base = self.store.get(full_name(body.get("from", ""))) if body.get("from") else None
        if not body.get("from"):
            return web.json_response({"error": "neither 'from' or 'files' was specified"}, status=400)
        if base is None:
            lines.append({"status": "pulling manifest"})
            error = "pull model manifest: file does not exist"
        layers = list(base.layers) if base else []
        if error is None and len(adapters) > 1:
            error = "only one adapter is currently supported"
        for _file, digest in sorted(adapters.items()) if error is None else ():
            lines.append({"status": "parsing GGUF"})
            blob = self.blobs.get(_canonical(digest))
            if blob is None:
                error = f"open {BLOBS_DIR}/{_canonical(digest).replace(':', '-')}: no such file or directory"
            elif not blob.startswith(b"GGUF"):
                error = "supplied file was not in GGUF format"
            else:
                layers.append(_canonical(digest))
        if error is None:
            lines += [{"status": f"using existing layer {d}"} for d in layers]
            lines += [{"status": "writing manifest"}, {"status": "success"}]
            old = self.store.get(full_name(name))
            self.store[full_name(name)] = Model(tuple(layers), body)
            if old is not None:
                self._prune(old)
        if body.get("stream") is False:
            if error is not None:
                return web.json_response({"error": error}, status=400 if adapters else 500)
            return web.json_response(lines[-1])
        if error is not None and not lines:
            return web.json_response({"error": error}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for line in lines:
            await response.write(json.dumps(line).encode() + b"\n")
            if self.fault == "stall":
                await self._hang()
        if error is not None:
            await response.write(json.dumps({"error": error}).encode() + b"\n")
        await response.write_eof()
        return response

    async def delete(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "missing request body"}, status=400)
        self._log(request, body)
        name = body.get("model") or body.get("name") or ""
        model = self.store.pop(full_name(name), None)
        if model is None:
            return web.json_response({"error": f"model '{name}' not found"}, status=404)
        self._prune(model)
        return web.Response(status=200)

    def _prune(self, gone: Model) -> None:
        used = {d for m in self.store.values() for d in m.layers}
        for digest in gone.layers:
            if digest not in used:
                self.blobs.pop(digest, None)


def _canonical(digest: str) -> str:
    return "sha256:" + digest[len("sha256:"):] if digest.startswith("sha256:") else "sha256:" + digest[len("sha256-"):]


def _seen(request: web.Request, body: dict[str, Any]) -> Seen:
    return Seen(f"{request.method} {request.path}", body)


@contextlib.contextmanager
def serving(fake: FakeOllamaModels) -> Iterator[FakeOllamaModels]:
    """Run ``fake`` on a thread of its own until the block ends."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fake.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
