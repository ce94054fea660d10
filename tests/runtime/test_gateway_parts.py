"""Small parts on their own: balancer, auth, metrics text, error normalisation."""

from __future__ import annotations

import json

import pytest
from gateway_harness import gateway_settings

from vilms.compiler.errors import ActionError
from vilms.runtime.gateway.apierrors import ApiError, normalize_upstream_error
from vilms.runtime.gateway.auth import KeyCheck
from vilms.runtime.gateway.balancer import Balancer, Endpoint
from vilms.runtime.gateway.metrics import Counter, Histogram


def test_round_robin_skips_cooling_and_tried():
    a, b, c = Endpoint("a"), Endpoint("b"), Endpoint("c")
    balancer = Balancer([a, b, c], "round_robin")
    assert [balancer.pick(now=0).url for _ in range(4)] == ["a", "b", "c", "a"]
    Balancer.failed(b, cooldown_s=10, now=0)
    assert [balancer.pick(now=1).url for _ in range(3)] == ["c", "a", "c"]
    assert balancer.pick({"a"}, now=1).url == "c"
    assert "b" in {balancer.pick(now=11).url for _ in range(3)}  # healthy again after its cooldown


def test_all_cooling_probes_the_one_whose_cooldown_ends_first():
    a, b = Endpoint("a"), Endpoint("b")
    balancer = Balancer([a, b], "round_robin")
    Balancer.failed(a, cooldown_s=10, now=0)
    Balancer.failed(b, cooldown_s=10, now=5)
    assert balancer.all_cooling(now=6)
    assert balancer.pick(now=6).url == "a"
    Balancer.succeeded(a)
    assert not balancer.all_cooling(now=6) and a.cooldown_until == 0


def test_least_inflight_picks_idlest_ties_in_rotation():
    a, b, c = Endpoint("a", inflight=3), Endpoint("b", inflight=1), Endpoint("c", inflight=1)
    balancer = Balancer([a, b, c], "least_inflight")
    assert balancer.pick(now=0).url == "b"
    assert balancer.pick(now=0).url == "c"
    c.inflight = 5
    assert balancer.pick(now=0).url == "b"


def test_keycheck_constant_time_match_and_errors():
    settings = gateway_settings(api_keys_env="K", keys={"n": {"env": "N"}})
    check = KeyCheck.from_settings(settings, {"K": " sk-a ,sk-b,", "N": "sk-n"})
    assert check.check("Bearer sk-n").name == "n"
    assert check.check("Bearer sk-b").name == "_api_keys"
    assert check.check("bearer sk-a").name == "_api_keys"
    for header, code in ((None, "missing_api_key"), ("Bearer sk-c", "invalid_api_key"),
                         ("Basic sk-a", "invalid_api_key"), ("sk-a", "invalid_api_key")):
        with pytest.raises(ApiError) as err:
            check.check(header)
        assert err.value.status == 401 and err.value.code == code
    assert KeyCheck.from_settings(gateway_settings(), {}).check(None).name == "-"  # auth off


def test_keycheck_refuses_to_run_open_when_env_is_empty():
    for environ in ({}, {"K": ""}, {"K": " , "}, {"K": "sk-a", "N": ""}):
        keys = {"n": {"env": "N"}} if "N" in environ else {}
        with pytest.raises(ActionError) as err:
            KeyCheck.from_settings(gateway_settings(api_keys_env="K", keys=keys), environ)
        missing = "N" if "N" in environ else "K"
        assert f"read from {missing}, but" in err.value.message and "unset or empty" in err.value.message


def test_prometheus_text_format():
    counter = Counter("x_total", "Things.", ("alias", "status"))
    counter.inc("a\"b", "200")
    counter.inc("a\"b", "200")
    hist = Histogram("d_seconds", "Durations.", ("alias",), buckets=(0.1, 1.0))
    hist.observe(0.05, "a")
    hist.observe(0.5, "a")
    hist.observe(5.0, "a")
    text = "\n".join([*counter.render(), *hist.render()])
    assert '# TYPE x_total counter\nx_total{alias="a\\"b",status="200"} 2' in text
    assert 'd_seconds_bucket{alias="a",le="0.1"} 1' in text
    assert 'd_seconds_bucket{alias="a",le="1"} 2' in text
    assert 'd_seconds_bucket{alias="a",le="+Inf"} 3' in text
    assert 'd_seconds_count{alias="a"} 3' in text and 'd_seconds_sum{alias="a"} 5.55' in text


def test_upstream_errors_normalised_to_openai_shape():
    ollama = json.loads(normalize_upstream_error(404, b'{"error": "model \\"x\\" not found"}'))
    assert ollama["error"]["message"] == 'model "x" not found' and ollama["error"]["code"] == "upstream_404"
    old_vllm = json.loads(normalize_upstream_error(400, b'{"object": "error", "message": "bad", "code": 400}'))
    assert old_vllm["error"]["message"] == "bad"
    new_vllm = b'{"error": {"message": "m", "type": "t", "param": null, "code": 400}}'
    assert normalize_upstream_error(400, new_vllm) == new_vllm
    text = json.loads(normalize_upstream_error(502, b"Bad Gateway"))
    assert text["error"]["message"] == "The engine answered HTTP 502." and text["error"]["type"] == "server_error"
    page = json.loads(normalize_upstream_error(403, b"<html>denied by proxy.internal:3128</html>"))
    assert "proxy.internal" not in page["error"]["message"]
