"""Named API keys: alias scopes (403), rpm/tpm limits (429 + x-ratelimit-* headers), metrics
by key name, reload keeping counters, bounded state under a flood of invalid keys."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import tracemalloc
from typing import Any

import pytest
from gateway_fakes import FakeVLLM
from gateway_harness import gateway, gateway_settings, routes_doc, run, sse_events, write_routes

from vilms.compiler.errors import ActionError
from vilms.runtime.gateway import auth as auth_module
from vilms.runtime.gateway.auth import KeyCheck, KeyRejected
from vilms.runtime.gateway.balancer import EndpointPool
from vilms.runtime.gateway.quota import KeyQuota, Limit, duration, retry_after
from vilms.runtime.gateway.routes import load_routes
from vilms.runtime.gateway.table import build_table

MODEL = "qwen2.5-1.5b"
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
CI, ADMIN = "sk-ci-0123456789secret", "sk-admin-9876543210secret"
ENV = {"CI_KEY": CI, "ADMIN_KEYS": ADMIN}
AS_CI = {"Authorization": f"Bearer {CI}"}
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


def key(aliases: list[str] | None = None, rpm: int | None = None, tpm: int | None = None,
        env: str = "CI_KEY") -> dict[str, Any]:
    return {"env": env, "aliases": aliases, "rpm": rpm, "tpm": tpm}


def doc_for(fake: FakeVLLM, other: FakeVLLM | None = None, **gateway_fields: Any) -> dict[str, Any]:
    """chat (falling back to big), embed, and big on a second engine; the admin keys in
    gateway.api_keys, the named key ``ci`` as given."""
    other = other or fake
    return routes_doc({"main": {"engine": "vllm", "endpoints": [fake.url]},
                       "other": {"engine": "vllm", "endpoints": [other.url]}},
                      {"chat": {"backend": "main", "model": MODEL, "fallbacks": ["big"]},
                       "embed": {"backend": "main", "model": MODEL, "task": "embedding"},
                       "big": {"backend": "other", "model": MODEL}},
                      **{"api_keys_env": "ADMIN_KEYS", **gateway_fields})


# --- the limiter on its own, on a clock of our choosing --------------------------------------

def test_rpm_bucket_admits_a_burst_then_refills_at_rpm_per_minute():
    quota = KeyQuota(Limit(2), None)
    assert quota.admit(0.0) == (None, 0.0, {"x-ratelimit-limit-requests": "2", "x-ratelimit-remaining-requests": "1",
                                            "x-ratelimit-reset-requests": "30s"})
    refused, _, headers = quota.admit(0.0)
    assert refused is None and headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "1m0s"
    refused, wait, headers = quota.admit(0.0)
    assert (refused, wait) == ("rpm", 30.0) and headers["x-ratelimit-remaining-requests"] == "0"
    assert retry_after(wait) == {"Retry-After": "30", "retry-after-ms": "30000"}
    refused, wait, _ = quota.admit(10.0)
    assert refused == "rpm" and wait == pytest.approx(20.0)  # refusals are not counted
    assert quota.admit(29.9)[0] == "rpm"
    assert quota.admit(30.0)[0] is None  # one request has drained (2 per minute: one per 30 s)
    assert quota.admit(30.0)[0] == "rpm"


def test_tpm_is_charged_after_the_request_and_may_overshoot_once():
    quota = KeyQuota(Limit(60), Limit(100))
    assert quota.admit(0.0)[0] is None
    quota.charge(150, 0.0)  # the last admitted request used more than was left
    refused, wait, headers = quota.admit(0.0)
    assert refused == "tpm" and wait == pytest.approx(30.0)  # 50 over, draining 100/60 per second
    assert headers["x-ratelimit-remaining-tokens"] == "0" and headers["x-ratelimit-limit-tokens"] == "100"
    assert headers["x-ratelimit-reset-tokens"] == "1m30s"  # until all 150 have drained
    assert headers["x-ratelimit-remaining-requests"] == "59"  # the refused request was not counted
    assert quota.admit(29.9)[0] == "tpm"
    refused, _, headers = quota.admit(30.1)
    assert refused is None and headers["x-ratelimit-remaining-tokens"] == "0"  # 99.8 used: not spent yet


def test_refusal_reports_the_longer_wait_of_both_limits():
    quota = KeyQuota(Limit(1), Limit(60))
    assert quota.admit(0.0)[0] is None
    quota.charge(70, 0.0)
    refused, wait, _ = quota.admit(0.0)
    assert refused == "rpm" and wait == pytest.approx(60.0)  # tokens: 10 s; requests: 60 s
    quota.charge(200, 0.0)
    refused, wait, _ = quota.admit(0.0)
    assert refused == "tpm" and wait == pytest.approx(210.0)


def test_carried_quota_keeps_usage_under_new_limits():
    old = KeyQuota(Limit(2), Limit(100))
    old.admit(0.0)
    old.admit(0.0)
    old.charge(80, 0.0)
    new = KeyQuota.carry(old, rpm=3, tpm=None)
    assert new is not None and new.tokens is None
    refused, _, headers = new.admit(0.0)
    assert refused is None and headers["x-ratelimit-remaining-requests"] == "0"  # 3 of 3 used
    assert new.admit(0.0)[0] == "rpm"
    assert KeyQuota.carry(old, None, None) is None


def test_reset_durations_in_openai_format():
    assert [duration(s) for s in (0.0, 0.0004, 0.25, 1.0, 1.5, 29.9991, 60.0, 90.5, 3725.0)] == \
        ["0s", "1ms", "250ms", "1s", "1.5s", "30s", "1m0s", "1m30.5s", "1h2m5s"]
    assert retry_after(0.0) == {"Retry-After": "1", "retry-after-ms": "1"}
    assert retry_after(0.2) == {"Retry-After": "1", "retry-after-ms": "200"}


# --- keys on their own ---------------------------------------------------------------------

def test_key_is_compared_with_every_configured_key_in_constant_time(monkeypatch):
    settings = gateway_settings(api_keys_env="ADMIN_KEYS", keys={"ci": key(), "ops": key(env="OPS_KEY")})
    check = KeyCheck.from_settings(settings, {"ADMIN_KEYS": "sk-a1,sk-a2", "CI_KEY": CI, "OPS_KEY": "sk-ops"})
    seen: list[tuple[int, int]] = []
    real = auth_module.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        seen.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", counting)
    for header, name in ((f"Bearer {CI}", "ci"), ("Bearer sk-a1", "_api_keys"), ("Bearer sk-ops", "ops")):
        seen.clear()
        assert check.check(header).name == name
        assert seen == [(32, 32)] * 4  # every key, digests of equal length: no early exit, no length leak
    seen.clear()
    with pytest.raises(KeyRejected):
        check.check("Bearer " + "x" * 5000)
    assert seen == [(32, 32)] * 4


def test_one_key_value_under_two_names_is_refused():
    settings = gateway_settings(api_keys_env="ADMIN_KEYS", keys={"ci": key(), "ops": key(env="OPS_KEY")})
    with pytest.raises(ActionError) as err:
        KeyCheck.from_settings(settings, {"ADMIN_KEYS": "sk-a", "CI_KEY": "sk-c", "OPS_KEY": "sk-x, sk-c"})
    assert "gateway.keys.ops and gateway.keys.ci hold the same key" in err.value.message
    assert "sk-c" not in err.value.message
    with pytest.raises(ActionError):
        KeyCheck.from_settings(settings, {"ADMIN_KEYS": "sk-a", "CI_KEY": "sk-a", "OPS_KEY": "sk-o"})
    KeyCheck.from_settings(settings, {"ADMIN_KEYS": "sk-a,sk-a", "CI_KEY": "sk-c, sk-c2", "OPS_KEY": "sk-o"})


def test_a_flood_of_invalid_keys_allocates_nothing_that_stays():
    settings = gateway_settings(api_keys_env="ADMIN_KEYS", keys={"ci": key(rpm=10, tpm=100)})
    check = KeyCheck.from_settings(settings, ENV)

    def flood(n: int) -> None:
        for _ in range(n):
            try:
                check.check("Bearer sk-" + os.urandom(12).hex())
            except KeyRejected:
                pass

    flood(2000)
    tracemalloc.start()
    try:
        flood(200)
        before = tracemalloc.get_traced_memory()[0]
        flood(20000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 4096, grown
    assert set(check.callers) == {"_api_keys", "ci"}


def test_reloaded_table_shares_usage_with_requests_still_on_the_old_one(tmp_path):
    fake_url = "http://127.0.0.1:9"
    doc = routes_doc({"main": {"engine": "vllm", "endpoints": [fake_url]}}, {"chat": {"backend": "main", "model": MODEL}},
                     keys={"ci": key(rpm=5, tpm=100)})
    pool = EndpointPool()
    old = build_table(load_routes(write_routes(tmp_path / "a.yaml", doc)), pool, ENV)
    doc["gateway"]["keys"]["ci"]["tpm"] = 200
    new = build_table(load_routes(write_routes(tmp_path / "b.yaml", doc)), pool, ENV, previous=old)
    old_ci, new_ci = old.keys.callers["ci"], new.keys.callers["ci"]
    assert new_ci is not old_ci and new_ci.quota.tokens.per_minute == 200
    old_ci.quota.charge(150, 0.0)  # a stream that started before the reload ends after it
    refused, _, headers = new_ci.quota.admit(0.0)
    assert refused is None and headers["x-ratelimit-remaining-tokens"] == "50"
    doc["gateway"]["keys"] = {"other": key()}
    dropped = build_table(load_routes(write_routes(tmp_path / "c.yaml", doc)), pool, ENV, previous=new)
    assert set(dropped.keys.callers) == {"other"}  # a removed key's counters go with it


# --- through the gateway -----------------------------------------------------------------

def test_scoped_key_gets_403_outside_its_aliases_and_sees_only_them(tmp_path):
    async def scenario():
        fake, other = await FakeVLLM(fault="500").start(), await FakeVLLM().start()
        doc = doc_for(fake, other, retries=0, keys={"ci": key(aliases=["chat"])})
        async with gateway(tmp_path, doc, environ=ENV) as gw:
            embed = await gw.post("/v1/embeddings", {"model": "embed", "input": "x"}, headers=AS_CI)
            big = await gw.post("/v1/chat/completions", {**CHAT, "model": "big"}, headers=AS_CI)
            nope = await gw.post("/v1/chat/completions", {**CHAT, "model": "nope"}, headers=AS_CI)
            chat = await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)  # chat's engine fails
            admin_chat = await gw.post("/v1/chat/completions", CHAT, headers=AS_ADMIN)
            models = await gw.get("/v1/models", headers=AS_CI)
            admin_models = await gw.get("/v1/models", headers=AS_ADMIN)
            one = await gw.get("/v1/models/chat", headers=AS_CI)
            hidden = await gw.get("/v1/models/big", headers=AS_CI)
        await fake.stop()
        await other.stop()
        for status, _, body in (embed, big, nope, hidden):
            assert status == 403
            assert body["error"]["code"] == "model_not_allowed" and body["error"]["type"] == "permission_error"
            assert set(body["error"]) == {"message", "type", "param", "code"}
        # an alias that exists and one that does not get the same answer, naming no other alias
        assert big[2]["error"]["message"] == nope[2]["error"]["message"].replace("'nope'", "'big'")
        assert "embed" not in big[2]["error"]["message"] and "chat" not in big[2]["error"]["message"]
        # chat's fallback (big) is outside ci's scope: not used for ci, used for the admin keys
        assert chat[0] == 500 and "x-vilms-fallback-from" not in chat[1]
        assert admin_chat[0] == 200 and admin_chat[1]["x-vilms-alias"] == "big"
        assert len(other.requests) == 1
        assert [m["id"] for m in models[2]["data"]] == ["chat"]
        assert [m["id"] for m in admin_models[2]["data"]] == ["big", "chat", "embed"]
        assert one[0] == 200 and one[2]["id"] == "chat"
        assert all(r.path != "/v1/embeddings" for r in fake.requests)

    run(scenario())


def test_rpm_429_with_retry_after_and_ratelimit_headers_also_on_success(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(fake, keys={"ci": key(rpm=2)}), environ=ENV) as gw:
            loop = asyncio.get_running_loop()
            start = loop.time()
            first = await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)
            second = await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)
            third = await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)
            elapsed = loop.time() - start
            admin = [await gw.post("/v1/chat/completions", CHAT, headers=AS_ADMIN) for _ in range(3)]
        await fake.stop()
        assert first[0] == second[0] == 200
        assert (first[1]["x-ratelimit-limit-requests"], first[1]["x-ratelimit-remaining-requests"]) == ("2", "1")
        assert second[1]["x-ratelimit-remaining-requests"] == "0"
        assert first[1]["x-ratelimit-reset-requests"].endswith("s")
        assert "x-ratelimit-limit-tokens" not in first[1]  # no tpm for this key
        status, headers, body = third
        assert status == 429
        assert body["error"]["code"] == "rate_limit_exceeded" and body["error"]["type"] == "requests"
        # two requests per minute: the next slot opens 30 s after the first, whole seconds rounded up
        assert math.ceil(30 - elapsed) <= int(headers["Retry-After"]) <= 30
        assert 30000 - elapsed * 1000 - 1 <= int(headers["retry-after-ms"]) <= 30000
        assert headers["x-ratelimit-remaining-requests"] == "0" and headers["x-ratelimit-limit-requests"] == "2"
        assert len([r for r in fake.requests if r.authorization is None]) == 5  # not the refused one
        assert all(a[0] == 200 and "x-ratelimit-limit-requests" not in a[1] for a in admin)  # api_keys: no limit

    run(scenario())


def test_tpm_counts_the_engines_usage_and_overshoots_once(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()  # usage: 10 prompt + 6 completion tokens per chat
        async with gateway(tmp_path, doc_for(fake, keys={"ci": key(tpm=20)}), environ=ENV) as gw:
            loop = asyncio.get_running_loop()
            start = loop.time()
            first = await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)
            second = await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)  # 16 < 20: admitted
            third = await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)  # 32 >= 20: refused
            elapsed = loop.time() - start
            metrics = (await gw.get("/metrics"))[2]
        await fake.stop()
        assert first[0] == second[0] == 200
        assert first[1]["x-ratelimit-remaining-tokens"] == "20" and first[1]["x-ratelimit-limit-tokens"] == "20"
        assert second[1]["x-ratelimit-remaining-tokens"] == "4"
        assert "x-ratelimit-limit-requests" not in first[1]
        status, headers, body = third
        assert status == 429 and body["error"]["type"] == "tokens"
        assert headers["x-ratelimit-remaining-tokens"] == "0"
        # 12 tokens over, draining 20 per minute: 36 s
        assert math.ceil(36 - elapsed) <= int(headers["Retry-After"]) <= 36
        assert 'vilms_gateway_key_tokens_total{key="ci",kind="prompt"} 20' in metrics
        assert 'vilms_gateway_key_tokens_total{key="ci",kind="completion"} 12' in metrics
        assert 'vilms_gateway_key_rejections_total{key="ci",reason="tpm"} 1' in metrics

    run(scenario())


def test_stream_is_charged_when_it_ends_and_carries_the_headers(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()  # a stream asked for usage reports 10 + 6 tokens in its last chunk
        async with gateway(tmp_path, doc_for(fake, keys={"ci": key(rpm=10, tpm=10)}), environ=ENV) as gw:
            stream = await gw.post("/v1/chat/completions", {**CHAT, "stream": True}, headers=AS_CI)
            after = await gw.post("/v1/chat/completions", {**CHAT, "stream": True}, headers=AS_CI)
        await fake.stop()
        status, headers, text = stream
        assert status == 200 and sse_events(text)[-1] == "[DONE]"
        assert headers["x-ratelimit-remaining-requests"] == "9" and headers["x-ratelimit-remaining-tokens"] == "10"
        assert '"usage"' not in text  # the client did not ask for usage: the engine's usage chunk is not passed on
        assert after[0] == 429 and after[1]["x-ratelimit-remaining-tokens"] == "0"
        assert after[1]["x-ratelimit-remaining-requests"] == "9"

    run(scenario())


def test_metrics_and_logs_name_keys_never_show_them(tmp_path, caplog):
    async def scenario():
        fake = await FakeVLLM().start()
        doc = doc_for(fake, keys={"ci": key(aliases=["chat"], rpm=1)})
        async with gateway(tmp_path, doc, environ=ENV) as gw:
            await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)
            await gw.post("/v1/chat/completions", {**CHAT, "model": "big"}, headers=AS_CI)
            await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)
            await gw.post("/v1/chat/completions", CHAT)
            await gw.post("/v1/chat/completions", CHAT, headers={"Authorization": "Bearer sk-guess-1234"})
            await gw.post("/v1/chat/completions", CHAT, headers=AS_ADMIN)
            await gw.get("/v1/models", headers={"Authorization": "Bearer sk-guess-1234"})
            return (await gw.get("/metrics"))[2]

    with caplog.at_level(logging.INFO, logger="vilms.gateway"):
        metrics = run(scenario())
    for line in ('vilms_gateway_key_requests_total{key="ci",alias="chat",status="200"} 1',
                 'vilms_gateway_key_requests_total{key="ci",alias="-",status="403"} 1',
                 'vilms_gateway_key_requests_total{key="ci",alias="-",status="429"} 1',
                 'vilms_gateway_key_requests_total{key="-",alias="-",status="401"} 2',
                 'vilms_gateway_key_requests_total{key="_api_keys",alias="chat",status="200"} 1',
                 'vilms_gateway_key_rejections_total{key="ci",reason="model_not_allowed"} 1',
                 'vilms_gateway_key_rejections_total{key="ci",reason="rpm"} 1',
                 'vilms_gateway_key_rejections_total{key="-",reason="missing_key"} 1',
                 'vilms_gateway_key_rejections_total{key="-",reason="invalid_key"} 2',
                 'vilms_gateway_key_tokens_total{key="ci",kind="prompt"} 10',
                 'vilms_gateway_key_tokens_total{key="_api_keys",kind="completion"} 6'):
        assert line in metrics, line
    logs = caplog.text
    assert "key=ci alias=chat" in logs and "key=_api_keys alias=chat" in logs and "key=- alias=-" in logs
    for secret in (CI, ADMIN, "sk-guess-1234"):
        assert secret not in metrics and secret not in logs


def test_flood_of_invalid_keys_grows_no_table(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        async with gateway(tmp_path, doc_for(fake, keys={"ci": key(rpm=100, tpm=1000)}), environ=ENV) as gw:
            async def flood(n: int) -> list[int]:
                return [r[0] for r in await asyncio.gather(*(
                    gw.post("/v1/chat/completions", CHAT, headers={"Authorization": f"Bearer sk-{os.urandom(8).hex()}"})
                    for _ in range(n)))]

            assert set(await flood(20)) == {401}
            series = (await gw.get("/metrics"))[2].count("\n")
            callers = dict(gw.state.table.keys.callers)
            for _ in range(5):
                assert set(await flood(60)) == {401}
            metrics = (await gw.get("/metrics"))[2]
            ok = await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)
        await fake.stop()
        assert metrics.count("\n") == series  # same series, only counts grew
        assert 'vilms_gateway_key_rejections_total{key="-",reason="invalid_key"} 320' in metrics
        assert gw.state.table.keys.callers == callers
        assert ok[0] == 200 and ok[1]["x-ratelimit-remaining-requests"] == "99"  # the flood cost ci nothing
        assert fake.requests and len(fake.requests) == 1

    run(scenario())


def test_reload_keeps_a_keys_counters_under_its_new_limits(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        doc = doc_for(fake, keys={"ci": key(rpm=2), "ops": key(rpm=1, env="OPS_KEY")})
        environ = {**ENV, "OPS_KEY": "sk-ops"}
        async with gateway(tmp_path, doc, environ=environ) as gw:
            used = [await gw.post("/v1/chat/completions", CHAT, headers=AS_CI) for _ in range(2)]
            refused = await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)
            assert gw.state.reload()  # same limits
            still = await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)
            doc["gateway"]["keys"]["ci"]["rpm"] = 3
            write_routes(gw.routes_file, doc)
            assert gw.state.reload()
            third = await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)
            fourth = await gw.post("/v1/chat/completions", CHAT, headers=AS_CI)
        await fake.stop()
        assert [u[0] for u in used] == [200, 200] and refused[0] == 429 and still[0] == 429
        assert third[0] == 200 and third[1]["x-ratelimit-limit-requests"] == "3"
        assert third[1]["x-ratelimit-remaining-requests"] == "0"  # 3 of 3: the two before the reload count
        assert fourth[0] == 429

    run(scenario())


class NoUsageEngine(FakeVLLM):
    """Like llama-cpp-python's server: a stream carries no usage, whatever stream_options asks."""

    async def _enter(self, request):  # type: ignore[no-untyped-def]
        body = await super()._enter(request)
        body.pop("stream_options", None)
        return body


@pytest.mark.parametrize("stream", [False, True], ids=["aggregated", "stream"])
def test_tpm_charges_the_gateways_prompt_estimate_when_the_engine_reports_none(tmp_path, stream):
    """llama.cpp answers (streamed upstream either way) carry no prompt usage: a key's tpm is
    charged the gateway's estimate of the prompt, so long prompts cannot slip past the limit."""
    async def scenario():
        fake = await NoUsageEngine().start()
        doc = routes_doc({"main": {"engine": "llamacpp", "endpoints": [fake.url]}},
                         {"chat": {"backend": "main", "model": MODEL}},
                         api_keys_env="ADMIN_KEYS", keys={"ci": key(tpm=100)})
        long_prompt = {"model": "chat", "messages": [{"role": "user", "content": "x" * 600}], "stream": stream}
        async with gateway(tmp_path, doc, environ=ENV) as gw:
            first = await gw.post("/v1/chat/completions", long_prompt, headers=AS_CI)
            second = await gw.post("/v1/chat/completions", long_prompt, headers=AS_CI)  # ~200 estimated > 100
            metrics = (await gw.get("/metrics"))[2]
        await fake.stop()
        assert first[0] == 200
        assert second[0] == 429 and second[2]["error"]["type"] == "tokens"
        assert 'vilms_gateway_key_tokens_total{key="ci",kind="prompt"} 2' in metrics  # 200-odd, estimated

    run(scenario())
