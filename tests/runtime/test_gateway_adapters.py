"""Runtime LoRA adapters on vLLM pods: the gateway loads released adapters into every pod it
discovers, routes adapter requests only to pods that confirmed them, reloads pods that
restarted, and releases (a new run) make-before-break. Real HTTP fakes (FakeVLLM) and a real
DNS server (FakeDNS)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import orjson
from gateway_fakes import FakeDNS, FakeVLLM, free_port
from gateway_harness import gateway, run, write_routes
from test_gateway_discovery import NAME, discovered_doc, lookup_now, start_dns, start_pods

from vilms.runtime.gateway.discovery import NAMESERVER_ENV

RUN1, RUN2 = "support-20261130T100000Z-aaaaaa", "support-20261130T110000Z-bbbbbb"  # released runs
BOT = {"model": "bot", "messages": [{"role": "user", "content": "hi"}]}
BASE = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def adapter_doc(port: int, run_id: str = RUN1, fallbacks: tuple[str, ...] = (), **settings: Any) -> dict[str, Any]:
    doc = discovered_doc(port, **settings)
    doc["aliases"]["bot"] = {"backend": "v", "model": run_id, "adapter": {
        "name": "support", "released": True, "run": run_id, "path": f"/adapters/{run_id}", "slot": None},
        "context": 8192, "max_output_tokens": 2048, "system": None, "params": {}, "fallbacks": list(fallbacks),
        "task": "chat"}
    return doc


async def setup(stack: AsyncExitStack, count: int, **kw: Any) -> tuple[int, list[FakeVLLM], FakeDNS]:
    port = free_port()
    pods = await start_pods(stack, count, port, **kw)
    return port, pods, await start_dns(stack, pods)


async def first_pass(gw: Any) -> None:
    await gw.state.discovery.next_round()
    await gw.state.adapters.reconcile()


async def send(gw: Any, body: dict[str, Any], count: int) -> list[tuple[int, dict[str, str], Any]]:
    return list(await asyncio.gather(*(gw.post("/v1/chat/completions", body) for _ in range(count))))


def paths(pod: FakeVLLM) -> list[tuple[str, str]]:
    """(path, model or adapter name) of each request the pod got, in order."""
    return [(r.path, r.body.get("model") or r.body.get("lora_name")) for r in pod.requests]


def last(steps: list[tuple[str, str]], step: tuple[str, str]) -> int:
    return len(steps) - 1 - steps[::-1].index(step)


def test_every_pod_gets_the_released_adapter_and_adapter_requests_spread(tmp_path: Path) -> None:
    async def body() -> None:
        async with AsyncExitStack() as stack:
            port, pods, dns = await setup(stack, 3)
            async with gateway(tmp_path, adapter_doc(port), environ={NAMESERVER_ENV: dns.address}) as gw:
                await first_pass(gw)
                assert all(p.loras == {RUN1: f"/adapters/{RUN1}"} for p in pods)
                answers = await send(gw, BOT, 9)
                assert {a[0] for a in answers} == {200}
                assert [p.adapter_requests(RUN1) for p in pods] == [3, 3, 3]
                _, _, ready = await gw.get("/readyz")
                assert ready["backends"]["v"]["adapters"] == {RUN1: 3}
                _, _, metrics = await gw.get("/metrics")
                assert f'vilms_gateway_adapter_endpoints{{backend="v",engine="vllm",adapter="{RUN1}"}} 3' in metrics
                assert 'vilms_gateway_adapter_operations_total{backend="v",engine="vllm",op="load",result="ok"} 3' in metrics

    run(body())


def test_a_new_pod_gets_the_adapters_before_any_adapter_request(tmp_path: Path) -> None:
    async def body() -> None:
        async with AsyncExitStack() as stack:
            port, pods, dns = await setup(stack, 3)
            dns.records[NAME] = [p.host for p in pods[:2]]
            async with gateway(tmp_path, adapter_doc(port), environ={NAMESERVER_ENV: dns.address}) as gw:
                await first_pass(gw)
                new = pods[2]
                new.hold_loads()
                dns.records[NAME] = [p.host for p in pods]
                await lookup_now(gw)  # discovery finds the pod and wakes the reconciler
                await new.load_asked.wait()
                assert {a[0] for a in await send(gw, BOT, 6)} == {200}
                assert {a[0] for a in await send(gw, BASE, 6)} == {200}
                assert new.adapter_requests(RUN1) == 0 and new.adapter_requests("qwen2.5-1.5b") == 2
                new.release_loads()
                await gw.state.adapters.reconcile()
                assert {a[0] for a in await send(gw, BOT, 6)} == {200}
                assert new.adapter_requests(RUN1) == 2
                chats = [m for p, m in paths(new) if p == "/v1/chat/completions"]
                loads = [m for p, m in paths(new) if p == "/v1/load_lora_adapter"]
                assert loads == [RUN1] and chats.count(RUN1) == 2

    run(body())


def test_a_restarted_pod_is_reloaded_and_gets_no_adapter_requests_meanwhile(tmp_path: Path) -> None:
    async def body() -> None:
        async with AsyncExitStack() as stack:
            port, pods, dns = await setup(stack, 2)
            async with gateway(tmp_path, adapter_doc(port), environ={NAMESERVER_ENV: dns.address}) as gw:
                await first_pass(gw)
                restarted = pods[1]
                restarted.restart()
                restarted.hold_loads()
                passing = asyncio.create_task(gw.state.adapters.reconcile())  # what the loop does every interval
                await restarted.load_asked.wait()
                before = restarted.adapter_requests(RUN1)
                assert {a[0] for a in await send(gw, BOT, 6)} == {200}
                assert restarted.adapter_requests(RUN1) == before  # none while it reloads
                assert pods[0].adapter_requests(RUN1) >= 6
                restarted.release_loads()
                await passing
                assert restarted.loras == {RUN1: f"/adapters/{RUN1}"}
                assert {a[0] for a in await send(gw, BOT, 4)} == {200}
                assert restarted.adapter_requests(RUN1) == before + 2

    run(body())


def test_a_pod_that_answers_404_for_its_adapter_is_skipped_and_reloaded(tmp_path: Path) -> None:
    async def body() -> None:
        async with AsyncExitStack() as stack:
            port, pods, dns = await setup(stack, 2)
            doc = adapter_doc(port, discovery_interval_s=3600.0)  # no periodic pass: the 404 must do it
            async with gateway(tmp_path, doc, environ={NAMESERVER_ENV: dns.address}) as gw:
                await first_pass(gw)
                pods[1].restart()  # the gateway has not noticed
                pods[1].hold_loads()
                answers = [await gw.post("/v1/chat/completions", BOT) for _ in range(4)]
                assert {a[0] for a in answers} == {200}  # the 404 was retried on the other pod
                assert pods[1].adapter_requests(RUN1) == 1
                _, _, metrics = await gw.get("/metrics")
                assert 'vilms_gateway_upstream_errors_total{alias="bot",backend="v",engine="vllm",kind="adapter_missing"} 1' in metrics
                await pods[1].load_asked.wait()  # the reconciler was woken up and reloads it
                pods[1].release_loads()
                await gw.state.adapters.next_pass()
                assert pods[1].loras == {RUN1: f"/adapters/{RUN1}"}
                await send(gw, BOT, 4)
                assert pods[1].adapter_requests(RUN1) == 3

    run(body())


def test_a_release_loads_the_new_run_everywhere_before_routing_then_unloads_the_old(tmp_path: Path) -> None:
    async def body() -> None:
        async with AsyncExitStack() as stack:
            port, pods, dns = await setup(stack, 2)
            async with gateway(tmp_path, adapter_doc(port), environ={NAMESERVER_ENV: dns.address}) as gw:
                await first_pass(gw)
                for old, new in ((RUN1, RUN2), (RUN2, RUN1)):  # a release, then a rollback
                    before = [p.adapter_requests(new) for p in pods]
                    pods[1].hold_loads()
                    write_routes(gw.routes_file, adapter_doc(port, run_id=new))
                    assert gw.state.reload()
                    await pods[1].load_asked.wait()
                    assert gw.state.pending is not None
                    assert {a[0] for a in await send(gw, BOT, 4)} == {200}  # the old run serves meanwhile
                    assert [p.adapter_requests(new) for p in pods] == before
                    pods[1].release_loads()
                    await gw.state.pending
                    unloaded = gw.state.adapters.next_pass()
                    assert {a[0] for a in await send(gw, BOT, 4)} == {200}
                    assert [p.adapter_requests(new) - b for p, b in zip(pods, before, strict=True)] == [2, 2]
                    await unloaded
                    for pod in pods:
                        assert set(pod.loras) == {new}
                        steps = paths(pod)
                        assert last(steps, ("/v1/load_lora_adapter", new)) < last(steps, ("/v1/unload_lora_adapter", old))

    run(body())


def test_no_pod_holds_the_adapter_the_fallback_answers_or_a_clean_503(tmp_path: Path) -> None:
    async def body() -> None:
        async with AsyncExitStack() as stack:
            port, pods, dns = await setup(stack, 2, adapter_paths=())  # every load fails: no such adapter
            doc = adapter_doc(port, fallbacks=("chat",))
            doc["aliases"]["strict"] = {**doc["aliases"]["bot"], "fallbacks": []}
            async with gateway(tmp_path, doc, environ={NAMESERVER_ENV: dns.address}) as gw:
                await first_pass(gw)
                status, headers, _ = await gw.post("/v1/chat/completions", BOT)
                assert status == 200 and headers["x-vilms-fallback-from"] == "bot"
                assert headers["x-vilms-alias"] == "chat"
                status, _, error = await gw.post("/v1/chat/completions", {**BOT, "model": "strict"})
                assert status == 503 and error["error"]["code"] == "adapter_loading"
                assert "127.0.0" not in error["error"]["message"] and "No adapter" not in error["error"]["message"]
                assert all(p.adapter_requests(RUN1) == 0 for p in pods)
                _, _, metrics = await gw.get("/metrics")
                assert 'vilms_gateway_adapter_operations_total{backend="v",engine="vllm",op="load",result="error"}' in metrics

    run(body())


def test_hostile_model_lists_confirm_nothing_and_stay_bounded(tmp_path: Path) -> None:
    async def body() -> None:
        async with AsyncExitStack() as stack:
            port, pods, dns = await setup(stack, 1)
            pod = pods[0]
            async with gateway(tmp_path, adapter_doc(port), environ={NAMESERVER_ENV: dns.address}) as gw:
                await gw.state.discovery.next_round()
                members = gw.state.table.backends["v"].members
                for hostile in (b"x" * (2 << 20), b'{"data": "nope"}', b"[1, 2]", b"\xff\xfe"):
                    pod.models_body = hostile
                    await gw.state.adapters.reconcile()
                    assert members.confirmed(pod.url) == frozenset() and pod.loras == {}
                    status, _, error = await gw.post("/v1/chat/completions", BOT)
                    assert status == 503 and error["error"]["code"] == "adapter_loading"
                # thousands of LoRA cards: only the names routes use are remembered
                cards = [{"id": f"junk-{i}", "object": "model", "parent": "qwen2.5-1.5b"} for i in range(10000)]
                pod.models_body = orjson.dumps({"object": "list", "data": [*cards, {"id": RUN1, "parent": "q"}]})
                await gw.state.adapters.reconcile()
                assert members.confirmed(pod.url) == frozenset({RUN1})
                # the fake holds none (vLLM answers 404): the gateway learns it at the first request
                status, _, error = await gw.post("/v1/chat/completions", BOT)
                assert status == 503 and error["error"]["code"] == "adapter_loading"
                assert members.confirmed(pod.url) == frozenset()

    run(body())
