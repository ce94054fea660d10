"""Gateway against fake vLLM servers: routing, auth, streaming, resilience, limits, metrics."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from gateway_fakes import FakeVLLM, free_port
from gateway_harness import gateway, routes_doc, run, sse_events

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}


def one_backend(*servers: FakeVLLM, **settings):  # type: ignore[no-untyped-def]
    return routes_doc({"vllm": {"engine": "vllm", "endpoints": [s.url for s in servers]}},
                      {"chat": {"backend": "vllm", "model": "qwen2.5-1.5b"}}, **settings)


def test_routes_alias_to_upstream_model_and_sets_headers(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, one_backend(fake)) as gw:
            status, headers, body = await gw.post("/v1/chat/completions", CHAT)
        await fake.stop()
        assert status == 200
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == "Hello from the fake server."
        assert fake.requests[0].path == "/v1/chat/completions"
        assert fake.requests[0].body["model"] == "qwen2.5-1.5b"
        assert headers["x-vilms-alias"] == "chat" and headers["x-vilms-backend"] == "vllm"
        assert float(headers["x-vilms-overhead-ms"]) >= 0
        assert "x-vilms-trimmed" not in headers

    run(scenario())


def test_unknown_alias_is_openai_404(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, one_backend(fake)) as gw:
            status, _, body = await gw.post("/v1/chat/completions", {**CHAT, "model": "gpt-4"})
        await fake.stop()
        assert status == 404
        assert body["error"]["code"] == "model_not_found"
        assert body["error"]["param"] == "model"
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert fake.requests == []

    run(scenario())


def test_models_lists_aliases(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        doc = one_backend(fake)
        doc["aliases"]["embed"] = {**doc["aliases"]["chat"], "task": "embedding", "model": "e5"}
        async with gateway(tmp_path, doc) as gw:
            status, _, body = await gw.get("/v1/models")
            one = await gw.get("/v1/models/embed")
            missing = await gw.get("/v1/models/nope")
        await fake.stop()
        assert status == 200 and body["object"] == "list"
        assert [m["id"] for m in body["data"]] == ["chat", "embed"]
        assert one[2]["id"] == "embed" and one[2]["vilms"]["task"] == "embedding"
        assert missing[0] == 404

    run(scenario())


def test_auth_401_without_or_with_wrong_key_and_200_with_key(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        doc = one_backend(fake, api_keys_env="GW_KEYS")
        async with gateway(tmp_path, doc, environ={"GW_KEYS": "sk-one, sk-two"}) as gw:
            missing = await gw.post("/v1/chat/completions", CHAT)
            wrong = await gw.post("/v1/chat/completions", CHAT, headers={"Authorization": "Bearer sk-three"})
            good = await gw.post("/v1/chat/completions", CHAT, headers={"Authorization": "Bearer sk-two"})
            models = await gw.get("/v1/models")
            health = await gw.get("/healthz")
        await fake.stop()
        assert missing[0] == 401 and missing[2]["error"]["code"] == "missing_api_key"
        assert wrong[0] == 401 and wrong[2]["error"]["type"] == "authentication_error"
        assert "sk-three" not in json.dumps(wrong[2])
        assert good[0] == 200
        assert models[0] == 401
        assert health[0] == 200
        assert len(fake.requests) == 1

    run(scenario())


def test_backend_key_is_sent_upstream_and_client_key_is_not(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        doc = one_backend(fake, api_keys_env="GW_KEYS")
        doc["backends"]["vllm"]["api_key_env"] = "VLLM_KEY"
        async with gateway(tmp_path, doc, environ={"GW_KEYS": "sk-client", "VLLM_KEY": "sk-upstream"}) as gw:
            status, _, _ = await gw.post("/v1/chat/completions", CHAT, headers={"Authorization": "Bearer sk-client"})
        await fake.stop()
        assert status == 200
        assert fake.requests[0].authorization == "Bearer sk-upstream"

    run(scenario())


def test_streaming_is_passed_through_chunk_by_chunk(tmp_path):
    async def scenario():
        fake = await FakeVLLM(chunk_delay_s=0.05).start()
        async with gateway(tmp_path, one_backend(fake)) as gw:
            arrivals = []
            async with gw.client.post(gw.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                loop = asyncio.get_running_loop()
                async for chunk in resp.content.iter_any():
                    arrivals.append((loop.time(), chunk))
        await fake.stop()
        text = b"".join(c for _, c in arrivals).decode()
        events = sse_events(text)
        assert events[-1] == "[DONE]"
        pieces = [json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]]
        assert "".join(pieces) == "Hello from the fake server."
        # Not buffered whole: chunks arrived spread over time, as the fake paced them.
        assert len(arrivals) >= 4
        assert arrivals[-1][0] - arrivals[0][0] >= 0.2

    run(scenario())


def test_retries_before_first_byte_on_other_endpoint(tmp_path):
    async def scenario():
        bad, good = await FakeVLLM(fault="500").start(), await FakeVLLM().start()
        async with gateway(tmp_path, one_backend(bad, good)) as gw:
            status, headers, _ = await gw.post("/v1/chat/completions", CHAT)
            metrics = (await gw.get("/metrics"))[2]
        await bad.stop()
        await good.stop()
        assert status == 200
        assert len(bad.requests) == 1 and len(good.requests) == 1
        assert 'vilms_gateway_retries_total{alias="chat",backend="vllm",engine="vllm"} 1' in metrics
        assert 'vilms_gateway_upstream_errors_total{alias="chat",backend="vllm",engine="vllm",kind="status_500"} 1' in metrics

    run(scenario())


def test_refused_endpoint_is_retried_and_cooled_down(tmp_path):
    async def scenario():
        good = await FakeVLLM().start()
        dead_url = f"http://127.0.0.1:{free_port()}"
        doc = routes_doc({"vllm": {"engine": "vllm", "endpoints": [dead_url, good.url]}},
                         {"chat": {"backend": "vllm", "model": "qwen2.5-1.5b"}}, eject_after=1)
        async with gateway(tmp_path, doc) as gw:
            results = [await gw.post("/v1/chat/completions", CHAT) for _ in range(6)]
            dead = gw.state.pool.get(dead_url)
            ready = await gw.get("/readyz")
        await good.stop()
        assert [r[0] for r in results] == [200] * 6
        # Only the first request paid for the dead endpoint; then it was cooling down.
        assert dead.failures == 1 and dead.cooldown_until > 0
        assert len(good.requests) == 6
        assert ready[2]["backends"]["vllm"]["ejected"] == 1 and ready[0] == 200

    run(scenario())


def test_cooldown_expires_and_endpoint_is_used_again(tmp_path):
    async def scenario():
        flaky, steady = await FakeVLLM(fault="500").start(), await FakeVLLM().start()
        async with gateway(tmp_path, one_backend(flaky, steady, cooldown_s=0.3, eject_after=1)) as gw:
            await gw.post("/v1/chat/completions", CHAT)  # flaky fails -> cooled down, steady answers
            flaky.fault = None
            for _ in range(4):
                await gw.post("/v1/chat/completions", CHAT)
            during = len(flaky.requests)
            await asyncio.sleep(0.35)
            for _ in range(4):
                await gw.post("/v1/chat/completions", CHAT)
        await flaky.stop()
        await steady.stop()
        assert during == 1  # skipped while cooling
        assert len(flaky.requests) == 3  # round-robin again after the cooldown

    run(scenario())


def test_round_robin_rotates_endpoints(tmp_path):
    async def scenario():
        fakes = [await FakeVLLM().start() for _ in range(3)]
        async with gateway(tmp_path, one_backend(*fakes)) as gw:
            for _ in range(9):
                assert (await gw.post("/v1/chat/completions", CHAT))[0] == 200
        for fake in fakes:
            await fake.stop()
        assert [len(f.requests) for f in fakes] == [3, 3, 3]

    run(scenario())


def test_least_inflight_avoids_busy_endpoint(tmp_path):
    async def scenario():
        slow, fast = await FakeVLLM(chunk_delay_s=0.1).start(), await FakeVLLM().start()
        async with gateway(tmp_path, one_backend(slow, fast, balance="least_inflight")) as gw:
            # The first streaming request lands on `slow` and stays in flight.
            long_one = asyncio.create_task(gw.post("/v1/chat/completions", {**CHAT, "stream": True}))
            while not slow.requests:
                await asyncio.sleep(0.01)
            for _ in range(4):
                assert (await gw.post("/v1/chat/completions", CHAT))[0] == 200
            await long_one
        await slow.stop()
        await fast.stop()
        assert len(slow.requests) == 1 and len(fast.requests) == 4

    run(scenario())


def test_fallback_alias_answers_when_primary_fails(tmp_path):
    async def scenario():
        broken, spare = await FakeVLLM(fault="500").start(), await FakeVLLM(models=("small",)).start()
        doc = routes_doc(
            {"main": {"engine": "vllm", "endpoints": [broken.url]}, "spare": {"engine": "vllm", "endpoints": [spare.url]}},
            {"chat": {"backend": "main", "model": "qwen2.5-1.5b", "fallbacks": ["small"]},
             "small": {"backend": "spare", "model": "small", "context": 2048, "max_output_tokens": 512}},
            retries=1)
        async with gateway(tmp_path, doc) as gw:
            status, headers, body = await gw.post("/v1/chat/completions", {**CHAT, "max_tokens": 4000})
            metrics = (await gw.get("/metrics"))[2]
        await broken.stop()
        await spare.stop()
        assert status == 200
        assert len(broken.requests) == 1  # a 500 may be the request's fault: not sent to that endpoint again
        assert headers["x-vilms-alias"] == "small" and headers["x-vilms-fallback-from"] == "chat"
        # The fallback's own limits apply (resolved after the alias).
        assert spare.requests[0].body["max_tokens"] == 512 and spare.requests[0].body["model"] == "small"
        assert 'vilms_gateway_fallbacks_total{alias="chat",fallback="small"} 1' in metrics

    run(scenario())


def test_all_failing_returns_openai_error(tmp_path):
    async def scenario():
        broken = await FakeVLLM(fault="500").start()
        async with gateway(tmp_path, one_backend(broken, retries=1)) as gw:
            status, _, body = await gw.post("/v1/chat/completions", CHAT)
        await broken.stop()
        assert status == 500
        assert body["error"]["code"] == "upstream_status_500"
        assert "EngineCore" not in body["error"]["message"]  # engine text stays out of client answers
        assert body["error"]["message"] == "Backend 'vllm' answered HTTP 500."

    run(scenario())


def test_client_error_is_not_retried(tmp_path):
    async def scenario():
        fake = await FakeVLLM(models=("other",)).start()
        async with gateway(tmp_path, one_backend(fake)) as gw:
            status, _, body = await gw.post("/v1/chat/completions", CHAT)
        await fake.stop()
        assert status == 404 and "does not exist" in body["error"]["message"]
        assert len(fake.requests) == 1

    run(scenario())


def test_drop_mid_stream_ends_with_error_and_is_not_retried(tmp_path):
    async def scenario():
        first, second = await FakeVLLM(fault="drop").start(), await FakeVLLM().start()
        async with gateway(tmp_path, one_backend(first, second)) as gw:
            status, headers, text = await gw.post("/v1/chat/completions", {**CHAT, "stream": True})
            metrics = (await gw.get("/metrics"))[2]
        await first.stop()
        await second.stop()
        assert status == 200
        events = sse_events(text)
        assert "[DONE]" not in events
        assert json.loads(events[-1])["error"]["code"] == "upstream_stream_interrupted"
        assert second.requests == []  # bytes had reached the client: no retry
        assert 'kind="midstream"' in metrics

    run(scenario())


def test_drop_before_first_byte_is_retried(tmp_path):
    async def scenario():
        first, second = await FakeVLLM(fault="drop").start(), await FakeVLLM().start()
        async with gateway(tmp_path, one_backend(first, second)) as gw:
            status, _, body = await gw.post("/v1/chat/completions", CHAT)  # non-streaming: truncated body
        await first.stop()
        await second.stop()
        assert status == 200 and body["choices"][0]["message"]["content"]
        assert len(first.requests) == 1 and len(second.requests) == 1

    run(scenario())


def test_hang_times_out_and_retries_on_other_endpoint(tmp_path):
    async def scenario():
        hung, good = await FakeVLLM(fault="hang").start(), await FakeVLLM().start()
        async with gateway(tmp_path, one_backend(hung, good, first_byte_timeout_s=0.3)) as gw:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            status, _, _ = await gw.post("/v1/chat/completions", CHAT)
            elapsed = loop.time() - t0
            await asyncio.sleep(0.1)
        await hung.stop()
        await good.stop()
        assert status == 200
        assert 0.25 <= elapsed < 2.0
        assert hung.cancelled == 1  # the timed-out upstream request was closed
        assert len(good.requests) == 1

    run(scenario())


def test_client_disconnect_cancels_upstream(tmp_path):
    async def scenario():
        slow = await FakeVLLM(chunk_delay_s=0.2, reply=["tok"] * 50).start()
        async with gateway(tmp_path, one_backend(slow)) as gw:
            async with aiohttp.ClientSession() as other:
                resp = await other.post(gw.url + "/v1/chat/completions", json={**CHAT, "stream": True})
                await resp.content.readany()  # the stream has started
                resp.close()  # the client goes away
            for _ in range(50):
                if slow.cancelled:
                    break
                await asyncio.sleep(0.05)
            inflight = gw.state.inflight
        await slow.stop()
        assert slow.cancelled == 1
        assert inflight == 0

    run(scenario())


def test_client_disconnect_cancels_hanging_upstream(tmp_path):
    async def scenario():
        hung = await FakeVLLM(fault="hang").start()
        async with gateway(tmp_path, one_backend(hung)) as gw:
            async with aiohttp.ClientSession() as other:
                task = asyncio.create_task(other.post(gw.url + "/v1/chat/completions", json=CHAT))
                while not hung.requests:
                    await asyncio.sleep(0.01)
                task.cancel()
            for _ in range(50):
                if hung.cancelled:
                    break
                await asyncio.sleep(0.05)
        await hung.stop()
        assert hung.cancelled == 1

    run(scenario())


def test_body_too_large_is_413(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, one_backend(fake, max_body_bytes=1000)) as gw:
            big = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}
            status, _, body = await gw.post("/v1/chat/completions", big)

            async def chunked():
                yield json.dumps(big).encode()

            async with gw.client.post(gw.url + "/v1/chat/completions", data=chunked(),
                                      headers={"Content-Type": "application/json"}) as resp:
                chunked_status = resp.status
        await fake.stop()
        assert status == 413 and body["error"]["code"] == "body_too_large"
        assert chunked_status == 413
        assert fake.requests == []

    run(scenario())


def test_bodies_that_are_not_a_json_object_are_400(tmp_path):
    bad = [b"not json", b"[1, 2]", b'{"model": "chat", "x": NaN}', b'{"model": "\\ud800"}', b'{"model": "chat"',
           b"\xff\xfe"]

    async def scenario():
        fake = await FakeVLLM().start()
        answers = []
        async with gateway(tmp_path, one_backend(fake)) as gw:
            for raw in bad:
                async with gw.client.post(gw.url + "/v1/chat/completions", data=raw,
                                          headers={"Content-Type": "application/json"}) as resp:
                    answers.append((resp.status, (await resp.json())["error"]["code"]))
        await fake.stop()
        assert answers == [(400, "invalid_json")] * len(bad)
        assert fake.requests == []

    run(scenario())


def test_queue_full_is_429(tmp_path):
    async def scenario():
        slow = await FakeVLLM(fault="hang").start()
        async with gateway(tmp_path, one_backend(slow, max_queue=2, read_timeout_s=2.0, retries=0)) as gw:
            hanging = [asyncio.create_task(gw.post("/v1/chat/completions", CHAT)) for _ in range(2)]
            while len(slow.requests) < 2:
                await asyncio.sleep(0.01)
            status, headers, body = await gw.post("/v1/chat/completions", CHAT)
            for task in hanging:
                task.cancel()
            await asyncio.gather(*hanging, return_exceptions=True)
        await slow.stop()
        assert status == 429
        assert headers["Retry-After"] == "1"
        assert body["error"]["code"] == "queue_full"

    run(scenario())


def test_unreleased_adapter_uses_fallback_or_503(tmp_path):
    async def scenario():
        fake = await FakeVLLM(models=("qwen2.5-1.5b", "support-v1")).start()
        backends = {"vllm": {"engine": "vllm", "endpoints": [fake.url]}}
        aliases = {
            "chat": {"backend": "vllm", "model": "qwen2.5-1.5b"},
            "support": {"backend": "vllm", "model": "support-v1", "fallbacks": ["chat"],
                        "adapter": {"name": "support-v1", "released": False}},
            "lonely": {"backend": "vllm", "model": "support-v1",
                       "adapter": {"name": "support-v1", "released": False}},
        }
        async with gateway(tmp_path, routes_doc(backends, aliases)) as gw:
            via_fallback = await gw.post("/v1/chat/completions", {**CHAT, "model": "support"})
            refused = await gw.post("/v1/chat/completions", {**CHAT, "model": "lonely"})
        await fake.stop()
        assert via_fallback[0] == 200 and via_fallback[1]["x-vilms-alias"] == "chat"
        assert [r.body["model"] for r in fake.requests] == ["qwen2.5-1.5b"]
        assert refused[0] == 503
        assert refused[2]["error"]["code"] == "adapter_not_released"
        assert "support-v1" in refused[2]["error"]["message"] and "not released" in refused[2]["error"]["message"]

    run(scenario())


def test_metrics_text_has_expected_series(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, one_backend(fake)) as gw:
            await gw.post("/v1/chat/completions", CHAT)
            await gw.post("/v1/chat/completions", {**CHAT, "max_tokens": 999999})
            await gw.post("/v1/chat/completions", {**CHAT, "model": "nope"})
            status, headers, text = await gw.get("/metrics")
        await fake.stop()
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert 'vilms_gateway_requests_total{alias="chat",backend="vllm",engine="vllm",status="200"} 2' in text
        assert 'vilms_gateway_requests_total{alias="-",backend="-",engine="-",status="404"} 1' in text
        assert 'vilms_gateway_request_duration_seconds_bucket{alias="chat",backend="vllm",engine="vllm",le="+Inf"} 2' in text
        assert 'vilms_gateway_request_duration_seconds_count{alias="chat",backend="vllm",engine="vllm"} 2' in text
        assert 'vilms_gateway_trimmed_total{alias="chat",what="max_tokens"} 1' in text
        assert "# TYPE vilms_gateway_in_flight gauge" in text
        assert "vilms_gateway_in_flight 0" in text

    run(scenario())


def test_embeddings_route_to_embedding_alias_only(tmp_path):
    async def scenario():
        fake = await FakeVLLM(models=("qwen2.5-1.5b", "e5")).start()
        doc = one_backend(fake)
        doc["aliases"]["embed"] = {**doc["aliases"]["chat"], "task": "embedding", "model": "e5"}
        async with gateway(tmp_path, doc) as gw:
            ok = await gw.post("/v1/embeddings", {"model": "embed", "input": ["a", "b"]})
            wrong = await gw.post("/v1/embeddings", {"model": "chat", "input": "a"})
            completion = await gw.post("/v1/completions", {"model": "chat", "prompt": "Once"})
        await fake.stop()
        assert ok[0] == 200 and len(ok[2]["data"]) == 2
        assert wrong[0] == 400 and wrong[2]["error"]["code"] == "wrong_task"
        assert completion[0] == 200 and completion[2]["object"] == "text_completion"

    run(scenario())
