"""DNS discovery: a backend's endpoints are its discovery name's A/AAAA records, looked up
every discovery_interval_s on a real DNS server (FakeDNS), with fake vLLM pods bound to
127.0.0.2, 127.0.0.3, ... on one port, as behind a headless Service."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from gateway_fakes import FakeDNS, FakeVLLM, free_port
from gateway_harness import gateway, routes_doc, run, sse_events

from vilms.compiler.errors import ActionError
from vilms.runtime.gateway.discovery import MAX_ENDPOINTS, NAMESERVER_ENV, endpoint_url
from vilms.runtime.gateway.state import GatewayState

NAME = "pods.test."
INTERVAL = 0.5  # the contract's minimum
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def discovered_doc(port: int, **gateway_settings: Any) -> dict[str, Any]:
    backend = {"engine": "vllm", "endpoints": [f"http://127.0.0.9:{port}"],  # static: nothing listens there
               "discovery": {"host": NAME, "port": port, "scheme": "http"}, "runtime_lora": True}
    settings = {"discovery_interval_s": INTERVAL, "retries": 2, "cooldown_s": 30.0, **gateway_settings}
    return routes_doc({"v": backend}, {"chat": {"backend": "v", "model": "qwen2.5-1.5b"}}, **settings)


async def start_pods(stack: AsyncExitStack, count: int, port: int, **kw: Any) -> list[FakeVLLM]:
    pods = []
    for i in range(count):
        pod = await FakeVLLM(host=f"127.0.0.{2 + i}", port=port, **kw).start()
        stack.push_async_callback(pod.stop)
        pods.append(pod)
    return pods


async def start_dns(stack: AsyncExitStack, pods: list[FakeVLLM]) -> FakeDNS:
    dns = await FakeDNS().start()
    stack.callback(dns.stop)
    dns.records[NAME] = [p.host for p in pods]
    return dns


def chat_requests(pod: FakeVLLM) -> int:
    return sum(1 for r in pod.requests if r.path == "/v1/chat/completions")


async def settled(gw: Any) -> None:
    """Two full rounds of the lookup loop: the one under way may have started before a DNS change."""
    await gw.state.discovery.next_round()
    await gw.state.discovery.next_round()


async def lookup_now(gw: Any) -> None:
    """One round of lookups now (what the loop does every interval), to keep tests short."""
    await gw.state.discovery.refresh(gw.state.table)


@pytest.mark.parametrize("balance", ["round_robin", "least_inflight"])
def test_traffic_spreads_over_every_discovered_pod(tmp_path: Path, balance: str) -> None:
    async def body() -> None:
        port = free_port()
        async with AsyncExitStack() as stack:
            pods = await start_pods(stack, 3, port)
            dns = await start_dns(stack, pods)
            env = {NAMESERVER_ENV: dns.address}
            async with gateway(tmp_path, discovered_doc(port, balance=balance), environ=env) as gw:
                await gw.state.discovery.next_round()
                answers = await asyncio.gather(*(gw.post("/v1/chat/completions", CHAT) for _ in range(30)))
                assert {status for status, _, _ in answers} == {200}
                assert all(chat_requests(p) >= 5 for p in pods), [chat_requests(p) for p in pods]
                _, _, ready = await gw.get("/readyz")
                assert ready["backends"]["v"]["endpoints"] == 3 and ready["backends"]["v"]["discovered"] is True
                _, _, metrics = await gw.get("/metrics")
                assert 'vilms_gateway_backend_endpoints{backend="v",engine="vllm"} 3' in metrics
                assert 'vilms_gateway_discovery_lookups_total{backend="v",engine="vllm",result="ok"}' in metrics

    run(body())


def test_a_pod_removed_from_dns_stops_getting_traffic_within_an_interval(tmp_path: Path) -> None:
    async def body() -> None:
        port = free_port()
        async with AsyncExitStack() as stack:
            pods = await start_pods(stack, 3, port)
            dns = await start_dns(stack, pods)
            async with gateway(tmp_path, discovered_doc(port), environ={NAMESERVER_ENV: dns.address}) as gw:
                await gw.state.discovery.next_round()
                for pod in pods:
                    pod.chunk_delay_s = 0.05
                # a stream under way on the pod that is about to leave finishes whole
                stream = asyncio.create_task(gw.post("/v1/chat/completions", {**CHAT, "stream": True}))
                waits = [asyncio.ensure_future(p.streaming.wait()) for p in pods]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for wait in waits:
                    wait.cancel()
                leaving = next(p for p in pods if p.inflight)
                dns.records[NAME] = [p.host for p in pods if p is not leaving]
                changed = time.monotonic()
                await settled(gw)
                assert time.monotonic() - changed < 2 * INTERVAL + 1.0
                assert len(gw.state.table.backends["v"].members.all.endpoints) == 2
                status, _, text = await stream
                assert status == 200 and sse_events(text)[-1] == "[DONE]"
                for pod in pods:
                    pod.chunk_delay_s = 0.0
                before = chat_requests(leaving)
                answers = await asyncio.gather(*(gw.post("/v1/chat/completions", CHAT) for _ in range(12)))
                assert {status for status, _, _ in answers} == {200}
                assert chat_requests(leaving) == before
                assert leaving.url not in {e.url for e in gw.state.pool.all()}  # its state is forgotten

    run(body())


@pytest.mark.parametrize("fault", ["servfail", "nxdomain", "silent", "empty"])
def test_a_failed_lookup_keeps_the_last_good_set(tmp_path: Path, fault: str) -> None:
    async def body() -> None:
        port = free_port()
        async with AsyncExitStack() as stack:
            pods = await start_pods(stack, 2, port)
            dns = await start_dns(stack, pods)
            async with gateway(tmp_path, discovered_doc(port), environ={NAMESERVER_ENV: dns.address}) as gw:
                await gw.state.discovery.next_round()
                if fault == "empty":
                    dns.records[NAME] = []
                else:
                    dns.fault = fault
                await lookup_now(gw)
                assert len(gw.state.table.backends["v"].members.all.endpoints) == 2
                answers = await asyncio.gather(*(gw.post("/v1/chat/completions", CHAT) for _ in range(6)))
                assert {status for status, _, _ in answers} == {200}
                assert all(chat_requests(p) == 3 for p in pods)
                _, _, metrics = await gw.get("/metrics")
                assert 'vilms_gateway_discovery_lookups_total{backend="v",engine="vllm",result="error"}' in metrics
                dns.fault, dns.records[NAME] = None, [pods[0].host]  # DNS answers again: the set follows it
                await lookup_now(gw)
                assert [e.url for e in gw.state.table.backends["v"].members.all.endpoints] == [pods[0].url]

    run(body())


def test_static_endpoints_serve_until_the_first_lookup_answers(tmp_path: Path) -> None:
    async def body() -> None:
        port = free_port()
        async with AsyncExitStack() as stack:
            pods = await start_pods(stack, 2, port)
            dns = await start_dns(stack, pods)
            dns.fault = "nxdomain"
            doc = discovered_doc(port)
            doc["backends"]["v"]["endpoints"] = [pods[1].url]
            async with gateway(tmp_path, doc, environ={NAMESERVER_ENV: dns.address}) as gw:
                await gw.state.discovery.next_round()
                for _ in range(3):
                    assert (await gw.post("/v1/chat/completions", CHAT))[0] == 200
                assert chat_requests(pods[1]) == 3 and chat_requests(pods[0]) == 0
                _, _, ready = await gw.get("/readyz")
                assert ready["backends"]["v"]["discovered"] is False

    run(body())


def test_hostile_dns_answers_are_bounded(tmp_path: Path) -> None:
    async def body() -> None:
        port = free_port()
        async with AsyncExitStack() as stack:
            pods = await start_pods(stack, 1, port)
            dns = await start_dns(stack, pods)
            dns.ttl = 2**31 - 1  # a huge TTL changes nothing: the interval decides
            async with gateway(tmp_path, discovered_doc(port), environ={NAMESERVER_ENV: dns.address}) as gw:
                await gw.state.discovery.next_round()
                members = gw.state.table.backends["v"].members
                dns.records[NAME] = [f"10.{i // 250}.{i % 250}.1" for i in range(400)]  # hundreds of records
                await lookup_now(gw)
                assert len(members.all.endpoints) == MAX_ENDPOINTS
                assert len(gw.state.pool.all()) == MAX_ENDPOINTS
                dns.records[NAME] = [pods[0].host]
                await lookup_now(gw)
                assert [e.url for e in members.all.endpoints] == [pods[0].url]
                dns.fault = "cname_loop"  # a CNAME chain that loops: an error, the set stays
                await lookup_now(gw)
                assert [e.url for e in members.all.endpoints] == [pods[0].url]
                assert (await gw.post("/v1/chat/completions", CHAT))[0] == 200

    run(body())


def test_aaaa_records_are_endpoints_too(tmp_path: Path) -> None:
    async def body() -> None:
        port = free_port()
        async with AsyncExitStack() as stack:
            pods = await start_pods(stack, 1, port)
            six = await FakeVLLM(host="::1", port=port).start()
            stack.push_async_callback(six.stop)
            dns = await start_dns(stack, [*pods, six])
            async with gateway(tmp_path, discovered_doc(port), environ={NAMESERVER_ENV: dns.address}) as gw:
                await gw.state.discovery.next_round()
                urls = [e.url for e in gw.state.table.backends["v"].members.all.endpoints]
                assert urls == [f"http://127.0.0.2:{port}", f"http://[::1]:{port}"]
                answers = await asyncio.gather(*(gw.post("/v1/chat/completions", CHAT) for _ in range(4)))
                assert {status for status, _, _ in answers} == {200}
                assert chat_requests(six) == 2 and chat_requests(pods[0]) == 2

    run(body())


def test_ipv6_records_become_bracketed_urls() -> None:
    assert endpoint_url("http", "fd00::1", 8000) == "http://[fd00::1]:8000"
    assert endpoint_url("https", "10.0.0.7", 443) == "https://10.0.0.7:443"


@pytest.mark.parametrize("value", ["nonsense", "10.0.0.1:99999", "[fd00::1", "dns.example:53"])
def test_a_bad_nameserver_override_is_refused_at_start(tmp_path: Path, value: str) -> None:
    from gateway_harness import write_routes

    routes = write_routes(tmp_path / "routes.yaml", discovered_doc(8000))
    with pytest.raises(ActionError) as err:
        GatewayState(routes, environ={NAMESERVER_ENV: value})
    assert NAMESERVER_ENV in err.value.render() and "IP:PORT" in err.value.render()
