"""routes.yaml loading: the compiler's shape loads; every mistake is reported with file:line:col."""

from __future__ import annotations

import pytest
import yaml
from gateway_harness import routes_doc

from vilms.compiler.contracts.contract import API_VERSION
from vilms.compiler.errors import InvalidInputError
from vilms.runtime.gateway.routes import load_routes, parse_routes

CONTRACT = """\
aliases:
  chat:
    adapter: null
    backend: ollama
    context: 8192
    fallbacks: []
    max_output_tokens: 2048
    model: qwen2.5-1.5b
    params: {temperature: 0.2}
    system: null
    task: chat
  support-bot:
    adapter: {name: support-v1, released: false, run: null, path: null, slot: null}
    backend: ollama
    context: 8192
    fallbacks: [chat]
    max_output_tokens: 2048
    model: support-v1
    params: {}
    system: You help customers.
    task: chat
apiVersion: contracts.vilms.dev/v1
backends:
  ollama:
    api_key_env: null
    discovery: null
    endpoints: ["http://ollama:11434"]
    engine: ollama
    runtime_lora: false
deployment: edge
gateway:
  api_keys_env: VILMS_API_KEYS
  balance: round_robin
  connect_timeout_s: 5.0
  cooldown_s: 30.0
  eject_after: 5
  discovery_interval_s: 5.0
  first_byte_timeout_s: 120.0
  keys:
    ci: {aliases: [chat], env: CI_KEY, rpm: 60, tpm: null}
  max_body_bytes: 8388608
  max_queue: 256
  max_response_bytes: 16777216
  on_overlong_prompt: reject
  ops_key_env: null
  telemetry: null
  read_timeout_s: 600.0
  request_timeout_s: 900.0
  retries: 2
  write_timeout_s: 30.0
hardware: {kind: jetson, memory_bytes: 8589934592, name: orin-nano}
kind: GatewayRoutes
"""


def test_contract_example_loads():
    routes = parse_routes(CONTRACT, "generated/edge/gateway/routes.yaml")
    assert routes.deployment == "edge" and routes.hardware.name == "orin-nano"
    assert routes.gateway.api_keys_env == "VILMS_API_KEYS" and routes.gateway.retries == 2
    assert routes.backends["ollama"].endpoints == ("http://ollama:11434",)
    chat, bot = routes.aliases["chat"], routes.aliases["support-bot"]
    assert dict(chat.params) == {"temperature": 0.2} and chat.servable
    assert bot.adapter is not None and bot.adapter.name == "support-v1" and not bot.servable
    assert bot.fallbacks == ("chat",) and bot.system == "You help customers."


def _error(text: str) -> str:
    with pytest.raises(InvalidInputError) as err:
        parse_routes(text, "routes.yaml")
    assert err.value.hint and "vilms build" in err.value.hint
    return err.value.render()


def test_unknown_key_is_reported_with_position_and_suggestion():
    message = _error(CONTRACT.replace("  retries: 2", "  retrys: 2"))
    assert "routes.yaml:49:3: gateway.retrys: unknown key 'retrys' (did you mean 'retries'?)" in message


def test_wrong_type_and_bad_choice_are_each_reported():
    text = CONTRACT.replace("context: 8192\n    fallbacks: []", "context: big\n    fallbacks: []")
    text = text.replace("balance: round_robin", "balance: random")
    message = _error(text)
    assert "2 problems found" in message
    assert "routes.yaml:5:14: aliases.chat.context: must be an integer, not a string" in message
    assert "routes.yaml:33:12: gateway.balance: 'random' is not one of round_robin, least_inflight" in message


def test_dangling_references_are_errors():
    text = CONTRACT.replace("fallbacks: [chat]", "fallbacks: [chatt]").replace("backend: ollama\n    context: 8192\n    fallbacks: []",
                                                                             "backend: olama\n    context: 8192\n    fallbacks: []")
    message = _error(text)
    assert "aliases.support-bot.fallbacks[0]: unknown alias 'chatt' (did you mean 'chat'?)" in message
    assert "aliases.chat.backend: unknown backend 'olama' (did you mean 'ollama'?)" in message


def test_endpoint_with_v1_suffix_is_an_error():
    message = _error(CONTRACT.replace('["http://ollama:11434"]', '["http://ollama:11434/v1"]'))
    assert "routes.yaml:27:17: backends.ollama.endpoints[0]: 'http://ollama:11434/v1' is not a valid entry of endpoints" in message
    assert "without the /v1 suffix" in message


def test_duplicate_key_is_a_located_error():
    message = _error(CONTRACT.replace("deployment: edge\n", "deployment: edge\ndeployment: edge2\n"))
    assert "duplicate key 'deployment'" in message and "routes.yaml:" in message


def test_self_fallback_and_max_output_over_context():
    doc = routes_doc({"b": {"engine": "vllm", "endpoints": ["http://h:1"]}},
                     {"a": {"backend": "b", "model": "m", "fallbacks": ["a"], "context": 100,
                            "max_output_tokens": 200}})
    message = _error(yaml.safe_dump(doc))
    assert "an alias cannot fall back to itself" in message
    assert "must not exceed context (100)" in message


def test_not_yaml_and_missing_file(tmp_path):
    message = _error("aliases: [unclosed")
    assert "routes.yaml:1:10: YAML syntax error: this '[' is never closed" in message
    with pytest.raises(InvalidInputError) as err:
        load_routes(tmp_path / "nope.yaml")
    assert f"{tmp_path / 'nope.yaml'}: file not found" in err.value.render() and "vilms build" in (err.value.hint or "")


def test_a_file_of_another_version_says_rebuild():
    message = _error(CONTRACT.replace(f"apiVersion: {API_VERSION}", "apiVersion: vilms/v1"))
    assert "routes.yaml:22:13: apiVersion: written by another ViLMS version (apiVersion 'vilms/v1'); " \
           f"this ViLMS reads {API_VERSION}\n" in message
    assert message.endswith("hint: run `vilms build` with this version of ViLMS")


def test_unknown_params_are_named():
    message = _error(CONTRACT.replace("params: {temperature: 0.2}", "params: {temprature: 0.2}"))
    assert "aliases.chat.params.temprature: unknown key 'temprature' (did you mean 'temperature'?)" in message
