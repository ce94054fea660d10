"""The gateway's metrics built from the one table (compiler/facts/telemetry.py): names on
``/metrics``, ``llm.ray.*`` twins, bounded attribute values, the OTLP data points, the queue counter."""

from __future__ import annotations

import asyncio

import pytest
from gateway_fakes import FakeVLLM
from gateway_harness import gateway, routes_doc, run
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from vilms.compiler.facts import telemetry as facts
from vilms.runtime.gateway.balancer import Endpoint
from vilms.runtime.gateway.metrics import RESPONSE_MODEL_CHARS, RESPONSE_MODELS_PER_BACKEND, GatewayMetrics

# The /metrics names before the table existed: dashboards and alerts use them, they must not move.
SHIPPED = {
    "vilms_gateway_requests_total": "counter", "vilms_gateway_request_duration_seconds": "histogram",
    "vilms_gateway_overhead_seconds": "histogram", "vilms_gateway_upstream_errors_total": "counter",
    "vilms_gateway_retries_total": "counter", "vilms_gateway_fallbacks_total": "counter",
    "vilms_gateway_trimmed_total": "counter", "vilms_gateway_reloads_total": "counter",
    "vilms_gateway_key_requests_total": "counter", "vilms_gateway_key_rejections_total": "counter",
    "vilms_gateway_key_tokens_total": "counter", "vilms_gateway_client_write_timeouts_total": "counter",
    "vilms_gateway_discovery_lookups_total": "counter", "vilms_gateway_adapter_operations_total": "counter",
    "vilms_gateway_in_flight": "gauge", "vilms_gateway_backend_endpoints": "gauge",
    "vilms_gateway_adapter_endpoints": "gauge", "vilms_gateway_endpoint_in_flight": "gauge",
    "vilms_gateway_endpoint_up": "gauge", "vilms_gateway_endpoint_consecutive_failures": "gauge",
}


def _metrics(endpoints=()) -> GatewayMetrics:  # type: ignore[no-untyped-def]
    return GatewayMetrics(lambda: [((), 0.0)], lambda: list(endpoints))


def _families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_every_instrument_of_the_table_is_on_metrics_under_its_derived_name():
    text = _metrics([Endpoint("http://10.0.0.1:8000")]).render()
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE"))
    assert types == {facts.prometheus_name(i): i.kind for i in facts.GATEWAY}
    for name, kind in SHIPPED.items():
        assert types[name] == kind, name
    assert {"gen_ai_client_operation_duration_seconds", "gen_ai_client_token_usage",
            "vilms_gateway_endpoint_rotations_total", "vilms_gateway_endpoint_ejections_total",
            "vilms_gateway_queue_rejections_total"} <= set(types)
    _families(text)  # prometheus_client's parser accepts the whole page


def test_labels_follow_the_table_and_empty_values_are_left_out():
    metrics = _metrics()
    metrics.operation_duration.observe(0.2, "chat", "vllm", "chat", "m", "10.0.0.1", "8000", "vllm", "vllm", "")
    metrics.operation_duration.observe(0.3, "chat", "vllm", "chat", "", "10.0.0.1", "8000", "vllm", "vllm", "status_500")
    text = metrics.render()
    assert ('gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="vllm",'
            'gen_ai_request_model="chat",'
            'gen_ai_response_model="m",server_address="10.0.0.1",server_port="8000",backend="vllm",engine="vllm"} 1'
            ) in text
    assert ('gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="vllm",'
            'gen_ai_request_model="chat",'
            'server_address="10.0.0.1",server_port="8000",backend="vllm",engine="vllm",error_type="status_500"} 1'
            ) in text


def test_a_ray_backends_series_are_also_reported_under_llm_ray():
    metrics = _metrics()
    assert "llm_ray" not in metrics.render()  # no Ray series, no twin families
    metrics.requests.inc("chat", "ray", "ray", "200", amount=3)
    metrics.requests.inc("other", "vllm", "vllm", "200")
    metrics.retries.inc("chat", "ray", "ray")
    metrics.latency.observe(0.5, "chat", "ray", "ray")
    metrics.fallbacks.inc("chat", "other")  # no engine attribute: no twin
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(metrics.render()) for s in f.samples}
    ray = (("alias", "chat"), ("backend", "ray"), ("engine", "ray"))
    assert samples[("llm_ray_requests_total", (*ray, ("status", "200")))] == 3
    assert samples[("vilms_gateway_requests_total", (*ray, ("status", "200")))] == 3
    assert not [k for k in samples if k[0] == "llm_ray_requests_total" and ("engine", "vllm") in k[1]]
    assert samples[("llm_ray_retries_total", ray)] == 1
    assert samples[("llm_ray_request_duration_seconds_count", ray)] == 1
    assert not [k for k in samples if k[0].startswith("llm_ray_fallbacks")]
    twins = [i.name for i, _, _ in metrics.families() if i.name.startswith(facts.RAY_PREFIX)]
    assert twins == ["llm.ray.requests", "llm.ray.request.duration", "llm.ray.retries"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.one_of(st.text(max_size=300), st.none(), st.integers(),
                                                                   st.just("base")))))
def test_response_model_values_are_bounded(answers):
    metrics = _metrics()
    seen: dict[str, set[str]] = {"a": set(), "b": set()}
    for backend, answered in answers:
        value = metrics.response_model(backend, answered, "base")
        assert value == "base" or (value == answered[:RESPONSE_MODEL_CHARS] and value.isprintable())  # type: ignore[index]
        seen[backend].add(value)
    for values in seen.values():
        assert len(values - {"base"}) <= RESPONSE_MODELS_PER_BACKEND


def test_otlp_data_points_carry_the_same_numbers():
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="the otel extra is not installed")
    from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics

    from vilms.runtime.gateway.metrics_export import MetricsExport, _Sdk

    metrics = _metrics([Endpoint("http://10.0.0.1:8000")])
    for value in (0.005, 0.05, 100.0):  # the last above every bound
        metrics.operation_duration.observe(value, "chat", "ray", "chat", "m", "10.0.0.1", "8000", "ray", "ray", "")
    metrics.requests.inc("chat", "ray", "ray", "200", amount=2)
    export = MetricsExport(metrics, None, 1.0, _Sdk())
    request = encode_metrics(export._data(metrics.families(), 2_000_000_000_000_000_000))
    by_name = {m.name: m for m in request.resource_metrics[0].scope_metrics[0].metrics}
    (point,) = by_name["gen_ai.client.operation.duration"].histogram.data_points
    assert point.count == 3 and point.sum == pytest.approx(100.055)
    assert list(point.explicit_bounds) == list(facts.DURATION_BUCKETS)
    expected = [0] * (len(facts.DURATION_BUCKETS) + 1)
    expected[0] = expected[3] = expected[-1] = 1  # <= 0.01, (0.04, 0.08], and 100 s above every bound
    assert list(point.bucket_counts) == expected
    assert {a.key: a.value.int_value for a in point.attributes if a.key == "server.port"} == {"server.port": 8000}
    assert "error.type" not in {a.key for a in point.attributes}
    (ray_point,) = by_name["llm.ray.requests"].sum.data_points
    assert ray_point.as_double == 2 and by_name["llm.ray.requests"].sum.is_monotonic
    assert by_name["vilms.gateway.endpoint.up"].gauge.data_points[0].as_double == 1
    assert point.start_time_unix_nano == metrics.started_ns
    assert "vilms.gateway.retries" not in by_name  # no series yet: left out of the export


def test_queue_rejections_are_counted(tmp_path):
    async def scenario():  # type: ignore[no-untyped-def]
        slow = await FakeVLLM(fault="hang").start()
        doc = routes_doc({"vllm": {"engine": "vllm", "endpoints": [slow.url]}},
                         {"chat": {"backend": "vllm", "model": "qwen2.5-1.5b"}}, max_queue=1, retries=0,
                         read_timeout_s=2.0)
        chat = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
        async with gateway(tmp_path, doc) as gw:
            hanging = asyncio.create_task(gw.post("/v1/chat/completions", chat))
            while not slow.requests:
                await asyncio.sleep(0.01)
            statuses = [(await gw.post("/v1/chat/completions", chat))[0] for _ in range(2)]
            _, _, text = await gw.get("/metrics")
            hanging.cancel()
            await asyncio.gather(hanging, return_exceptions=True)
        await slow.stop()
        return statuses, text

    statuses, text = run(scenario())
    assert statuses == [429, 429]
    assert 'vilms_gateway_queue_rejections_total{alias="-",backend="-",engine="-"} 2' in text


def test_series_of_endpoints_that_left_are_dropped(tmp_path):
    """A reload (or DNS) that removes an endpoint drops its per-endpoint series: bounded by the endpoints now."""
    from gateway_harness import write_routes

    async def scenario():  # type: ignore[no-untyped-def]
        a, b = await FakeVLLM(fault="500").start(), await FakeVLLM().start()
        alias = {"chat": {"backend": "vllm", "model": "qwen2.5-1.5b"}}
        doc = routes_doc({"vllm": {"engine": "vllm", "endpoints": [a.url, b.url]}}, alias, eject_after=1)
        chat = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
        async with gateway(tmp_path, doc) as gw:
            assert (await gw.post("/v1/chat/completions", chat))[0] == 200  # a fails (ejected), b answers
            _, _, before = await gw.get("/metrics")
            write_routes(gw.routes_file, routes_doc({"vllm": {"engine": "vllm", "endpoints": [b.url]}}, alias))
            assert gw.state.reload()
            _, _, after = await gw.get("/metrics")
        for fake in (a, b):
            await fake.stop()
        return a.port, b.port, before, after

    a_port, b_port, before, after = run(scenario())
    assert f'server_port="{a_port}"' in before and 'endpoint_ejections_total{backend="vllm"' in before
    assert f'server_port="{a_port}"' not in after and "vilms_gateway_endpoint_ejections_total{" not in after
    assert f'server_port="{b_port}"' in after


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=40), st.text(max_size=40), st.integers(1, 5)), max_size=8))
def test_metrics_text_round_trips_any_label_value(rows):
    """Key names and aliases are operator-chosen text: whatever they hold, /metrics stays parseable
    and gives back the same values (an empty value is the same as no label)."""
    metrics = _metrics()
    expected: dict[tuple[str, str], float] = {}
    for key, alias, amount in rows:
        metrics.key_requests.inc(key, alias, "200", amount=amount)
        expected[(key, alias)] = expected.get((key, alias), 0) + amount
    found = {(s.labels.get("key", ""), s.labels.get("alias", "")): s.value
             for f in text_string_to_metric_families(metrics.render()) for s in f.samples
             if s.name == "vilms_gateway_key_requests_total"}
    assert found == expected


def test_the_gateway_without_telemetry_never_imports_opentelemetry():
    """The request path (app, proxy, metrics) needs no OpenTelemetry: the SDK loads only for export."""
    import subprocess
    import sys

    code = ("import sys, vilms.runtime.gateway.server, vilms.runtime.gateway.app, vilms.runtime.gateway.proxy; "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_without_the_otel_extra_the_export_is_off_with_one_warning(monkeypatch, caplog):
    import sys

    from vilms.compiler.contracts.telemetry import OtlpSpec
    from vilms.runtime.gateway.metrics_export import MetricsExport

    for name in ("opentelemetry.sdk.metrics.export", "opentelemetry.exporter.otlp.proto.http.metric_exporter"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError, as when not installed
    spec = OtlpSpec(endpoint="http://127.0.0.1:4318", endpoint_env=None, headers_env={}, interval_s=15.0,
                    metrics=True, traces=False)
    assert MetricsExport.from_settings(spec, _metrics(), {}) is None
    assert [r.getMessage() for r in caplog.records if r.name == "vilms.gateway"] == [
        "OpenTelemetry metrics export is configured but opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http "
        "are not installed: no metrics export"]
    off = OtlpSpec(endpoint="http://127.0.0.1:4318", endpoint_env=None, headers_env={}, interval_s=15.0,
                   metrics=False, traces=True)
    assert MetricsExport.from_settings(off, _metrics(), {}) is None  # metrics: false
