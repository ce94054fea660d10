"""Trimming to the hardware profile: clamp, reject, truncate, and the response header."""

from __future__ import annotations

import pytest
from gateway_fakes import FakeVLLM
from gateway_harness import gateway, make_route, routes_doc, run

from vilms.runtime.gateway.apierrors import ApiError
from vilms.runtime.gateway.trimming import estimate_messages, estimate_text, fit_request

ALIAS = make_route(name="chat", backend="b", model="m", context=100, max_output_tokens=40)


def test_estimate_is_bytes_over_three_rounded_up():
    assert estimate_text("") == 0
    assert estimate_text("abcd") == 2
    assert estimate_text("é") == 1  # 2 bytes
    assert estimate_text("漢字漢") == 3  # 9 bytes: CJK ~1 token per character
    assert estimate_messages([{"role": "user", "content": "abc"}]) == 3 + 4 + 1


def test_max_tokens_clamped_to_alias_and_to_context_left():
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 500}
    notes = fit_request(body, ALIAS, "chat", "reject")
    assert body["max_tokens"] == 40 and notes == ["max_tokens=500->40"]
    long_prompt = {"messages": [{"role": "user", "content": "x" * 240}], "max_completion_tokens": 30}
    notes = fit_request(long_prompt, ALIAS, "chat", "reject")
    estimate = estimate_messages(long_prompt["messages"])  # 87 tokens: 13 left in the context
    assert long_prompt["max_completion_tokens"] == 100 - estimate
    assert notes == [f"max_completion_tokens=30->{100 - estimate}"]


def test_missing_max_tokens_gets_the_clamp_without_a_note():
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert fit_request(body, ALIAS, "chat", "reject") == []
    assert body["max_tokens"] == 40


def test_bad_max_tokens_is_400():
    with pytest.raises(ApiError) as err:
        fit_request({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}, ALIAS, "chat", "reject")
    assert err.value.status == 400 and err.value.param == "max_tokens"


def test_overlong_prompt_rejected_by_default():
    body = {"messages": [{"role": "user", "content": "x" * 400}]}
    with pytest.raises(ApiError) as err:
        fit_request(body, ALIAS, "chat", "reject")
    assert err.value.status == 400 and err.value.code == "context_length_exceeded"
    assert "100 tokens" in err.value.message


def test_truncate_drops_oldest_turns_and_keeps_system_and_last():
    messages = [{"role": "system", "content": "be brief"}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "y" * 60} for i in range(6)]
    body = {"messages": messages}
    notes = fit_request(body, ALIAS, "chat", "truncate")
    kept = body["messages"]
    assert kept[0]["role"] == "system" and kept[-1] == messages[-1]
    assert len(kept) < len(messages)
    assert notes[0] == f"messages_dropped={len(messages) - len(kept)}"
    assert estimate_messages(kept) <= ALIAS.context - 1


def test_truncate_cuts_a_single_huge_message_keeping_its_end():
    body = {"messages": [{"role": "user", "content": "a" * 1000 + "THE END"}]}
    notes = fit_request(body, ALIAS, "chat", "truncate")
    content = body["messages"][0]["content"]
    assert content.endswith("THE END") and len(content) < 300
    assert notes[0].startswith("prompt_cut_chars=")
    assert estimate_messages(body["messages"]) <= ALIAS.context - 1


def test_completion_prompt_truncated_keeps_tail():
    body = {"prompt": "b" * 1000 + "tail"}
    notes = fit_request(body, ALIAS, "completions", "truncate")
    assert body["prompt"].endswith("tail") and notes[0].startswith("prompt_cut_chars=")


def test_through_gateway_header_reports_changes(tmp_path):
    async def scenario():
        fake = await FakeVLLM().start()
        doc = routes_doc({"v": {"engine": "vllm", "endpoints": [fake.url]}},
                         {"chat": {"backend": "v", "model": "qwen2.5-1.5b", "context": 200, "max_output_tokens": 50},
                          "cut": {"backend": "v", "model": "qwen2.5-1.5b", "context": 200, "max_output_tokens": 50}})
        async with gateway(tmp_path, doc) as gw:
            clamped = await gw.post("/v1/chat/completions", {"model": "chat", "max_tokens": 1000,
                                                             "messages": [{"role": "user", "content": "hi"}]})
            rejected = await gw.post("/v1/chat/completions", {"model": "chat",
                                                              "messages": [{"role": "user", "content": "z" * 5000}]})
        doc["gateway"]["on_overlong_prompt"] = "truncate"
        async with gateway(tmp_path, doc) as gw:
            truncated = await gw.post("/v1/chat/completions", {"model": "cut",
                                                               "messages": [{"role": "user", "content": "z" * 5000}]})
        await fake.stop()
        assert clamped[0] == 200 and clamped[1]["x-vilms-trimmed"] == "max_tokens=1000->50"
        assert fake.requests[0].body["max_tokens"] == 50
        assert rejected[0] == 400 and rejected[2]["error"]["code"] == "context_length_exceeded"
        assert len(fake.requests) == 2  # the rejected request never went upstream
        assert truncated[0] == 200 and truncated[1]["x-vilms-trimmed"].startswith("prompt_cut_chars=")
        assert len(fake.requests[1].body["messages"][0]["content"]) < 600

    run(scenario())


def test_params_and_system_defaults_client_wins():
    from vilms.runtime.gateway.defaults import apply_defaults

    alias = make_route(name="a", backend="b", model="m", context=100, max_output_tokens=10, system="SYS",
                       params={"temperature": 0.2, "top_p": 0.5})
    body = {"messages": [{"role": "user", "content": "x"}], "temperature": 0.9}
    apply_defaults(body, alias, "chat")
    assert body["temperature"] == 0.9 and body["top_p"] == 0.5
    assert body["messages"][0] == {"role": "system", "content": "SYS"}
    own = {"messages": [{"role": "system", "content": "mine"}, {"role": "user", "content": "x"}]}
    apply_defaults(own, alias, "chat")
    assert [m["content"] for m in own["messages"]] == ["mine", "x"]
