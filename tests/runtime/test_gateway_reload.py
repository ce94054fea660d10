"""Hot reload: SIGHUP and file change swap the table; broken files keep the old one."""

from __future__ import annotations

import asyncio
import os
import signal

from gateway_fakes import FakeVLLM
from gateway_harness import gateway, routes_doc, run, sse_events, write_routes

from vilms.compiler.contracts.contract import API_VERSION

CHAT = {"messages": [{"role": "user", "content": "Hi"}]}


def doc_for(*pairs: tuple[str, FakeVLLM]):  # type: ignore[no-untyped-def]
    return routes_doc({f"b{i}": {"engine": "vllm", "endpoints": [fake.url]} for i, (_, fake) in enumerate(pairs)},
                      {name: {"backend": f"b{i}", "model": "qwen2.5-1.5b"} for i, (name, _) in enumerate(pairs)})


async def wait_until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_sighup_reloads_routes(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(("chat", fake)), install_signals=True) as gw:
            before = await gw.post("/v1/chat/completions", {**CHAT, "model": "fresh"})
            write_routes(gw.routes_file, doc_for(("chat", fake), ("fresh", fake)))
            os.kill(os.getpid(), signal.SIGHUP)
            await wait_until(lambda: "fresh" in gw.state.table.aliases)
            after = await gw.post("/v1/chat/completions", {**CHAT, "model": "fresh"})
        await fake.stop()
        assert before[0] == 404 and after[0] == 200

    run(scenario())


def test_file_change_is_picked_up_by_the_watcher(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(("chat", fake)), watch_interval_s=0.05) as gw:
            write_routes(gw.routes_file, doc_for(("renamed", fake)))
            await wait_until(lambda: "renamed" in gw.state.table.aliases)
            gone = await gw.post("/v1/chat/completions", {**CHAT, "model": "chat"})
            new = await gw.post("/v1/chat/completions", {**CHAT, "model": "renamed"})
            metrics = (await gw.get("/metrics"))[2]
        await fake.stop()
        assert gone[0] == 404 and new[0] == 200
        assert 'vilms_gateway_reloads_total{result="ok"} 1' in metrics

    run(scenario())


def test_broken_file_keeps_old_table(tmp_path, caplog):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(("chat", fake)), watch_interval_s=0.05) as gw:
            old = gw.state.table
            gw.routes_file.write_text(f"apiVersion: {API_VERSION}\nkind: GatewayRoutes\naliases: {{chat: {{backend: nowhere}}}}\n")
            await wait_until(lambda: gw.state.metrics.reloads.values.get(("error",), 0) >= 1)
            assert gw.state.reload() is False  # the SIGHUP path, same result
            still = await gw.post("/v1/chat/completions", {**CHAT, "model": "chat"})
            table_kept = gw.state.table is old
        await fake.stop()
        assert still[0] == 200 and table_kept

    run(scenario())
    assert "routes reload failed; still serving the previous routes" in caplog.text
    assert "missing required key" in caplog.text


def test_in_flight_request_finishes_on_old_table(tmp_path):
    async def scenario():
        old_backend = await FakeVLLM(chunk_delay_s=0.1).start()
        new_backend = await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(("chat", old_backend))) as gw:
            streaming = asyncio.create_task(gw.post("/v1/chat/completions", {**CHAT, "model": "chat", "stream": True}))
            await wait_until(lambda: bool(old_backend.requests))
            write_routes(gw.routes_file, doc_for(("chat", new_backend)))
            assert gw.state.reload() is True
            fresh = await gw.post("/v1/chat/completions", {**CHAT, "model": "chat"})
            status, _, text = await streaming
        await old_backend.stop()
        await new_backend.stop()
        assert status == 200 and sse_events(text)[-1] == "[DONE]"
        assert fresh[0] == 200
        assert len(old_backend.requests) == 1 and len(new_backend.requests) == 1

    run(scenario())


def test_reload_refuses_a_file_whose_key_env_is_now_missing(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(("chat", fake))) as gw:
            doc = doc_for(("chat", fake))
            doc["gateway"]["api_keys_env"] = "NOT_SET_ANYWHERE"
            write_routes(gw.routes_file, doc)
            swapped = gw.state.reload()
            still_open = await gw.post("/v1/chat/completions", {**CHAT, "model": "chat"})
        await fake.stop()
        assert swapped is False and still_open[0] == 200

    run(scenario())


def test_file_briefly_missing_during_a_swap_is_not_an_error(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(("chat", fake)), watch_interval_s=0.05) as gw:
            gw.routes_file.unlink()
            await asyncio.sleep(0.2)
            errors_while_missing = gw.state.metrics.reloads.values.get(("error",), 0)
            staged = gw.routes_file.with_name("routes.yaml.new")
            write_routes(staged, doc_for(("swapped", fake)))
            staged.rename(gw.routes_file)
            await wait_until(lambda: "swapped" in gw.state.table.aliases)
        await fake.stop()
        return errors_while_missing

    assert run(scenario()) == 0
