"""The gateway selects a llama.cpp adapter per request: ``lora`` carries every slot's scale.

A fake OpenAI-compatible engine records what the gateway sends; the real llama.cpp servers
are in test_llamacpp_adapters.py.
"""

from __future__ import annotations

import yaml
from gateway_fakes import FakeVLLM
from gateway_harness import gateway, routes_doc, run

from vilms.compiler.contracts.routes import ROUTES
from vilms.runtime.gateway.upstream import lora_slots

MODELS = ("tiny", "faq-v1", "support-v1")
CHAT = {"messages": [{"role": "user", "content": "Hello"}]}


def doc(*urls: str, engine: str = "llamacpp"):  # type: ignore[no-untyped-def]
    def adapter(name: str, slot: int | None, released: bool = True) -> dict:
        return {"name": name, "released": released, "run": f"{name}-20261120T091500Z-5c4b3a" if released else None, "slot": slot}

    return routes_doc(
        {"tiny": {"engine": engine, "endpoints": list(urls)}, "other": {"engine": engine, "endpoints": list(urls)}},
        {"chat": {"backend": "tiny", "model": "tiny"},
         "faq-bot": {"backend": "tiny", "model": "faq-v1", "adapter": adapter("faq-v1", 0)},
         "support-bot": {"backend": "tiny", "model": "support-v1", "adapter": adapter("support-v1", 1)},
         "next-bot": {"backend": "tiny", "model": "next-v1", "adapter": adapter("next-v1", None, released=False),
                      "fallbacks": ["chat"]},
         "other": {"backend": "other", "model": "tiny"}})


def test_the_slot_count_of_a_backend_comes_from_its_routes():
    routes = ROUTES.parse(yaml.safe_dump(doc("http://127.0.0.1:1")).encode(), "routes.yaml")
    assert (lora_slots(routes.aliases, "tiny"), lora_slots(routes.aliases, "other")) == (2, 0)


def test_each_alias_sends_its_adapter_at_scale_one_and_every_other_slot_at_zero(tmp_path):
    async def scenario():
        fake = await FakeVLLM(models=MODELS).start()
        async with gateway(tmp_path, doc(fake.url)) as gw:
            for alias in ("support-bot", "chat", "faq-bot", "next-bot"):
                status, _, _ = await gw.post("/v1/chat/completions", {**CHAT, "model": alias})
                assert status == 200
            # a client's own lora never reaches the engine: the route decides
            await gw.post("/v1/completions", {"model": "chat", "prompt": "Hi", "lora": [{"id": 1, "scale": 1.0}]})
            await gw.post("/v1/chat/completions", {**CHAT, "model": "other", "lora": [{"id": 0, "scale": 1.0}]})
        await fake.stop()
        return [(r.body["model"], r.body.get("lora")) for r in fake.requests]

    base = [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]
    assert run(scenario()) == [
        ("support-v1", [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]),
        ("tiny", base),
        ("faq-v1", [{"id": 0, "scale": 1.0}, {"id": 1, "scale": 0.0}]),
        ("tiny", base),  # next-bot is not released: its fallback, the base model
        ("tiny", base),
        ("tiny", None),  # a server without adapters gets no lora field
    ]


def test_other_engines_pass_no_lora_selection(tmp_path):
    async def scenario():
        fake = await FakeVLLM(models=MODELS).start()
        async with gateway(tmp_path, doc(fake.url, engine="vllm")) as gw:
            await gw.post("/v1/chat/completions", {**CHAT, "model": "support-bot"})
        await fake.stop()
        return fake.requests[0].body

    body = run(scenario())
    assert body["model"] == "support-v1" and "lora" not in body
