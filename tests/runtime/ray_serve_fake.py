"""A fake Ray Serve LLM OpenAI endpoint on 127.0.0.1: what KubeRay's ``<rayservice>-serve-svc`` answers.

Behaviour follows Ray 2.60's router (ray/llm/_internal/serve/core/ingress/ingress.py) and LLMServer:

- ``GET /v1/models``: each base model, plus ``<base>:<adapter>`` for every adapter folder found under
  the model's ``dynamic_lora_loading_path`` (``get_lora_model_ids`` lists the store's subfolders);
  cards are ``{"id", "object": "model", "owned_by", "permission", "metadata"}``.
- ``POST /v1/chat/completions``: the ``model`` is a base id or ``<base>:<adapter>``
  (``get_base_model_id`` splits at the first ':'); an unknown base is a 404 ``Could not find base model
  with ID``; an adapter is downloaded from the store on its first request on a replica (then cached:
  ``downloads``), and one missing from the store is a 404 whose message names the missing
  ``adapter_config.json`` in the store folder (``get_lora_finetuned_context_length``), in the shape of
  ``get_response_for_error``. Answers and SSE streams are vLLM's (Ray Serve LLM runs vLLM's serving code).
- No ``/v1/load_lora_adapter``: the route does not exist on Ray's router (FastAPI's 404 ``{"detail":
  "Not Found"}``); every request is still recorded, so a test can prove nothing asked for it.
- ``GET /-/healthz`` (``success``) and ``GET /-/routes`` (the Serve proxy's own endpoints).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from gateway_fakes import FakeVLLM, Seen


class FakeRayServe(FakeVLLM):
    """Ray Serve LLM behind its Serve proxy; ``store`` maps a base model to the adapters in its store folder."""

    def __init__(self, *args: Any, store_uri: str = "s3://bucket/vilms", store: dict[str, set[str]] | None = None,
                 **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.store_uri = store_uri
        self.store: dict[str, set[str]] = store if store is not None else {m: set() for m in self.models}
        self.cached: set[str] = set()  # adapters this replica downloaded
        self.downloads: list[str] = []

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_get("/-/healthz", self.healthz)
        app.router.add_get("/-/routes", self.routes)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    def _ray_error(self, status: int, message: str) -> web.Response:
        full = f"Message: {message} (Request ID: 0), Internal exception: {message}, original exception: {status}: {message}"
        return web.json_response({"error": {"message": full, "type": "HTTPException", "param": None, "code": status}},
                                 status=status)

    def _check(self, body: dict[str, Any]) -> web.Response | None:
        if self.fault == "500":
            return self._ray_error(500, "Internal Server Error")
        model = body.get("model")
        if not isinstance(model, str):
            return self._ray_error(400, "Model parameter is required when multiple models are configured.")
        base, _, adapter = model.partition(":")
        if base not in self.models:
            return self._ray_error(404, f'Got request for model "{model}". Could not find base model with ID "{base}".')
        if adapter and model not in self.cached:
            if adapter not in self.store.get(base, set()):
                return self._ray_error(404, f'Unable to find LoRA adapter config file "adapter_config.json" in folder '
                                            f"{self.store_uri}/{adapter}. Check that the file exists and that you have "
                                            "read permissions.")
            self.cached.add(model)
            self.downloads.append(model)
        return None

    async def list_models(self, request: web.Request) -> web.Response:
        self.requests.append(self._seen(request))
        ids = [m for base in self.models for m in (base, *(f"{base}:{a}" for a in sorted(self.store.get(base, set()))))]
        cards = [{"id": i, "object": "model", "owned_by": "organization-owner", "permission": [], "metadata": {}}
                 for i in ids]
        return web.json_response({"data": cards, "object": "list"})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="success")

    async def routes(self, request: web.Request) -> web.Response:
        return web.json_response({"/": "llm"})

    async def not_found(self, request: web.Request) -> web.Response:
        self.requests.append(self._seen(request))
        return web.json_response({"detail": "Not Found"}, status=404)

    def _seen(self, request: web.Request) -> Seen:
        return Seen(request.path, {}, request.headers.get("Authorization"))
