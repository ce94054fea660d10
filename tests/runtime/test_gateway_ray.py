"""The gateway in front of Ray Serve LLM (engine ray): an adapter alias is sent as ``<model>:<run_id>``
and Ray loads the run from the artifact store on its first request, so a release and a rollback are a
routes reload only: the next request carries the new name, with no restart, no load call and no wait.
A run missing from the store (Ray's 404) fails over to the alias's fallbacks. Every series and log line
of the backend carries ``engine="ray"``. A real HTTP fake of Ray's router (ray_serve_fake.FakeRayServe)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from gateway_harness import gateway, routes_doc, run, sse_events, write_routes
from ray_serve_fake import FakeRayServe

from vilms.compiler.facts import ray as ray_facts

BASE = "qwen2.5-1.5b"
RUN1, RUN2, GONE = ("support-v1-20261130T100000Z-aaaaaa", "support-v1-20261201T100000Z-bbbbbb",
                    "support-v1-20261202T100000Z-cccccc")
STORE = "s3://acme-adapters/vilms"
BOT = {"model": "bot", "messages": [{"role": "user", "content": "hi"}]}


def ray_doc(url: str, run_id: str, fallbacks: tuple[str, ...] = ("chat",)) -> dict[str, Any]:
    """Routes as the compiler writes them for a Ray deployment (render/routes.py)."""
    return routes_doc(
        {"ray": {"engine": ray_facts.ENGINE, "endpoints": [url], "runtime_lora": False}},
        {"chat": {"backend": "ray", "model": BASE},
         "bot": {"backend": "ray", "model": f"{BASE}{ray_facts.ADAPTER_SEPARATOR}{run_id}", "fallbacks": list(fallbacks),
                 "adapter": {"name": "support-v1", "released": True, "run": run_id, "path": f"{STORE}/{run_id}"}}},
        retries=2)


def chats(fake: FakeRayServe) -> list[str]:
    return [r.body["model"] for r in fake.requests if r.path == "/v1/chat/completions"]


async def release(gw: Any, url: str, run_id: str, **kw: Any) -> None:
    write_routes(gw.routes_file, ray_doc(url, run_id, **kw))
    assert gw.state.reload()
    assert gw.state.pending is None  # swapped at once: nothing to load ahead on a Ray backend


def test_release_and_rollback_are_a_routes_reload_only(tmp_path: Path) -> None:
    async def body() -> None:
        fake = await FakeRayServe(models=(BASE,), store_uri=STORE, store={BASE: {RUN1, RUN2}}).start()
        try:
            async with gateway(tmp_path, ray_doc(fake.url, RUN1)) as gw:
                status, headers, answer = await gw.post("/v1/chat/completions", BOT)
                assert status == 200 and answer["model"] == f"{BASE}:{RUN1}"
                assert headers["x-vilms-backend"] == "ray" and "x-vilms-fallback-from" not in headers
                await gw.state.adapters.reconcile()  # the reconciler has nothing to do on Ray
                await release(gw, fake.url, RUN2)  # a release
                status, _, answer = await gw.post("/v1/chat/completions", {**BOT, "stream": True})
                events = sse_events(answer)
                assert status == 200 and events[-1] == "[DONE]"
                assert json.loads(events[0])["model"] == f"{BASE}:{RUN2}"
                await release(gw, fake.url, RUN1)  # a rollback
                status, _, answer = await gw.post("/v1/chat/completions", BOT)
                assert status == 200 and answer["model"] == f"{BASE}:{RUN1}"
                await gw.state.adapters.reconcile()
                status, _, answer = await gw.post("/v1/chat/completions", {**BOT, "model": "chat"})
                assert status == 200 and answer["model"] == BASE
            assert chats(fake) == [f"{BASE}:{RUN1}", f"{BASE}:{RUN2}", f"{BASE}:{RUN1}", BASE]
            # nothing but inference: no /v1/models listing, no load or unload call, ever
            assert {r.path for r in fake.requests} == {"/v1/chat/completions"}
            assert fake.downloads == [f"{BASE}:{RUN1}", f"{BASE}:{RUN2}"]  # Ray's own on-demand loads, cached
        finally:
            await fake.stop()

    run(body())


def test_a_run_missing_from_the_store_falls_back_and_counts_as_engine_ray(tmp_path: Path, caplog) -> None:
    async def body() -> None:
        fake = await FakeRayServe(models=(BASE,), store_uri=STORE, store={BASE: {RUN1}}).start()
        try:
            async with gateway(tmp_path, ray_doc(fake.url, GONE)) as gw:
                with caplog.at_level(logging.INFO, logger="vilms.gateway"):
                    status, headers, answer = await gw.post("/v1/chat/completions", BOT)
                assert status == 200 and answer["model"] == BASE  # answered by the fallback
                assert headers["x-vilms-fallback-from"] == "bot" and headers["x-vilms-alias"] == "chat"
                await release(gw, fake.url, GONE, fallbacks=())
                status, _, error = await gw.post("/v1/chat/completions", BOT)
                assert status == 503 and error["error"]["code"] == "adapter_missing"
                assert STORE not in json.dumps(error)  # the engine's text (the store's folder) stays in the gateway
                _, _, metrics = await gw.get("/metrics")
            assert chats(fake) == [f"{BASE}:{GONE}", BASE, f"{BASE}:{GONE}"]  # no retry of a missing run
            assert 'vilms_gateway_upstream_errors_total{alias="bot",backend="ray",engine="ray",kind="adapter_missing"} 2' in metrics
            assert 'vilms_gateway_requests_total{alias="chat",backend="ray",engine="ray",status="200"} 1' in metrics
            assert 'vilms_gateway_requests_total{alias="bot",backend="ray",engine="ray",status="503"} 1' in metrics
            assert 'vilms_gateway_backend_endpoints{backend="ray",engine="ray"} 1' in metrics
            assert 'vilms_gateway_fallbacks_total{alias="bot",fallback="chat"} 1' in metrics
            assert "vilms_gateway_adapter_operations_total{" not in metrics
            logged = [r.getMessage() for r in caplog.records if "adapter" in r.getMessage()]
            assert logged and all("engine=ray" in m for m in logged)
            access = [r.getMessage() for r in caplog.records if r.name == "vilms.gateway.access"]
            assert access and all("backend=ray engine=ray" in m for m in access)
        finally:
            await fake.stop()

    run(body())


def test_the_fake_answers_like_ray_serve(tmp_path: Path) -> None:
    """The fake's own contract, so the tests above test against Ray's behaviour."""
    import aiohttp

    async def body() -> None:
        fake = await FakeRayServe(models=(BASE,), store_uri=STORE, store={BASE: {RUN1}}).start()
        try:
            async with aiohttp.ClientSession() as client:
                async with client.get(fake.url + "/v1/models") as resp:
                    ids = [m["id"] for m in (await resp.json())["data"]]
                async with client.post(fake.url + "/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "/x"}) as resp:
                    load_status = resp.status
                async with client.post(fake.url + "/v1/chat/completions", json={**BOT, "model": "other:x"}) as resp:
                    unknown = resp.status, (await resp.json())["error"]
                async with client.get(fake.url + ray_facts.SERVE_HEALTH_PATH) as resp:
                    health = resp.status, await resp.text()
            assert ids == [BASE, f"{BASE}:{RUN1}"]
            assert load_status == 404
            assert unknown[0] == 404 and 'Could not find base model with ID "other"' in unknown[1]["message"]
            assert set(unknown[1]) == {"message", "type", "param", "code"}
            assert health == (200, "success")
        finally:
            await fake.stop()

    run(body())
