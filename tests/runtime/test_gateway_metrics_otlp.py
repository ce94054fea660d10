"""Gateway metrics over OTLP: fake engines behind the gateway, a real OTLP/HTTP receiver on
127.0.0.1 decoding the protobuf payloads, and ``/metrics`` showing the same series.

The main scenario forces a retry that rotates to another endpoint (and ejects the first), a
fallback from a dead backend to a Ray one, and checks the exact counter values, histogram counts
and attributes received, ``llm.ray.*`` for the Ray backend, the resource, and the header.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from gateway_fakes import FakeVLLM, free_port
from gateway_harness import gateway, routes_doc, run
from prometheus_client.parser import text_string_to_metric_families
from ray_serve_fake import FakeRayServe

from vilms.compiler.facts import ray as ray_facts
from vilms.compiler.facts import telemetry as facts

pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="the otel extra is not installed")
from tests.support.otlp_receiver import Receiver, metric_names, points  # noqa: E402 - needs the otel extra

MODEL = "qwen2.5-1.5b"
SECRET = "s3cret-collector-token"
GATEWAY = facts.by_name(facts.GATEWAY)


def _otlp(**fields):  # type: ignore[no-untyped-def]
    spec = {"endpoint": None, "endpoint_env": "OTLP_BASE", "headers_env": {"x-collector-token": "OTLP_TOKEN"},
            "interval_s": 1.0, "metrics": True, "traces": False}
    spec.update(fields)
    return spec


def _chat(model: str, stream: bool = False) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": stream}


def _one(pts, **attrs):  # type: ignore[no-untyped-def]
    found = [p for p in pts if all(p.attributes.get(k) == v for k, v in attrs.items())]
    assert len(found) == 1, (attrs, [p.attributes for p in pts])
    return found[0]


def _prometheus(text: str) -> dict[tuple[str, frozenset], float]:
    """``/metrics`` parsed by prometheus_client's own parser: (sample name, labels) → value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def test_retry_rotation_ejection_fallback_and_ray_counters_reach_the_receiver(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vilms.gateway")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connect errors

    async def scenario(receiver: Receiver):  # type: ignore[no-untyped-def]
        bad, good = await FakeVLLM(fault="500").start(), await FakeVLLM().start()
        ray = await FakeRayServe().start()
        doc = routes_doc(
            {"vllm": {"engine": "vllm", "endpoints": [bad.url, good.url]},
             "ray": {"engine": ray_facts.ENGINE, "endpoints": [ray.url]},
             "down": {"engine": "vllm", "endpoints": [dead]}},
            {"chat": {"backend": "vllm", "model": MODEL},
             "rchat": {"backend": "ray", "model": MODEL},
             "flaky": {"backend": "down", "model": MODEL, "fallbacks": ["rchat"]}},
            retries=2, eject_after=1, cooldown_s=300.0, telemetry=_otlp())
        environ = {"OTLP_BASE": receiver.url, "OTLP_TOKEN": SECRET}
        try:
            async with gateway(tmp_path, doc, environ=environ) as gw:
                status, headers, _ = await gw.post("/v1/chat/completions", _chat("chat"))  # bad (500) → good
                assert status == 200 and headers["x-vilms-backend"] == "vllm"
                status, _, _ = await gw.post("/v1/chat/completions", _chat("chat", stream=True))  # bad is cooling
                assert status == 200
                status, headers, _ = await gw.post("/v1/chat/completions", _chat("flaky"))  # 3 connects, then rchat
                assert status == 200 and headers["x-vilms-fallback-from"] == "flaky"
                for _ in range(2):
                    status, _, _ = await gw.post("/v1/chat/completions", _chat("rchat"))
                    assert status == 200
                for _ in range(100):  # a periodic export while serving (interval 1 s)
                    if receiver.received:
                        break
                    await asyncio.sleep(0.1)
                periodic = len(receiver.received)
                _, _, text = await gw.get("/metrics")
        finally:
            for fake in (bad, good, ray):
                await fake.stop()
        return periodic, text

    with Receiver() as receiver:
        periodic, text = run(scenario(receiver))
    assert periodic >= 1  # the interval, not only the final export
    last = receiver.received[-1]
    assert last.path == facts.OTLP_METRICS_PATH
    assert last.headers["x-collector-token"] == SECRET
    assert last.headers["content-type"] == "application/x-protobuf"
    export = last.request
    (resource,) = export.resource_metrics
    assert {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"] == facts.GATEWAY_SERVICE
    assert resource.scope_metrics[0].scope.name == facts.METER

    def value(name: str, **attrs) -> float:  # type: ignore[no-untyped-def]
        point = _one(points(export, name), **attrs)
        assert point.kind == "sum" and point.monotonic and point.temporality == 2  # cumulative
        return point.value

    vllm = {"alias": "chat", "backend": "vllm", "engine": "vllm"}
    assert value("vilms.gateway.retries", **vllm) == 1
    assert value("vilms.gateway.endpoint.rotations", **vllm) == 1
    assert value("vilms.gateway.upstream.errors", kind="status_500", **vllm) == 1
    down = {"alias": "flaky", "backend": "down", "engine": "vllm"}
    assert value("vilms.gateway.retries", **down) == 2  # the only endpoint, tried again: no rotation
    assert value("vilms.gateway.upstream.errors", kind="connect", **down) == 3
    assert not [p for p in points(export, "vilms.gateway.endpoint.rotations") if p.attributes["alias"] == "flaky"]
    assert value("vilms.gateway.fallbacks", alias="flaky", fallback="rchat") == 1
    bad_label = {p.attributes["endpoint"] for p in points(export, "vilms.gateway.endpoint.ejections")}
    assert len(bad_label) == 2  # the bad vLLM endpoint and the dead one, each once (not per failure)
    assert all(p.value == 1 for p in points(export, "vilms.gateway.endpoint.ejections"))
    assert value("vilms.gateway.requests", alias="chat", backend="vllm", engine="vllm", status="200") == 2
    assert value("vilms.gateway.requests", alias="rchat", backend="ray", engine="ray", status="200") == 3
    assert value("vilms.gateway.key.requests", key="-", alias="rchat", status="200") == 3

    # llm.ray.*: the Ray backend's series again, and only those
    ray_requests = points(export, "llm.ray.requests")
    assert [(p.attributes, p.value) for p in ray_requests] == [
        ({"alias": "rchat", "backend": "ray", "engine": "ray", "status": "200"}, 3.0)]
    assert _one(points(export, "llm.ray.request.duration"), alias="rchat").count == 3
    assert all(p.attributes["engine"] == "ray" for n in metric_names(export) if n.startswith("llm.ray.")
               for p in points(export, n))

    # GenAI client metrics: one operation per upstream attempt
    duration = points(export, "gen_ai.client.operation.duration")
    good_port = int(next(p.attributes["server.port"] for p in duration if p.attributes["gen_ai.request.model"] == "chat"
                         and "error.type" not in p.attributes))
    failed = _one(duration, **{"gen_ai.request.model": "chat", "error.type": "status_500"})
    assert failed.count == 1 and "gen_ai.response.model" not in failed.attributes
    ok = _one(duration, **{"gen_ai.request.model": "chat", "server.port": good_port})
    assert ok.count == 2 and ok.kind == "histogram" and ok.bounds == facts.DURATION_BUCKETS
    assert sum(ok.buckets) == ok.count and len(ok.buckets) == len(ok.bounds) + 1
    assert ok.attributes == {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "vllm", "gen_ai.request.model": "chat",
                             "gen_ai.response.model": MODEL, "server.address": "127.0.0.1", "server.port": good_port,
                             "backend": "vllm", "engine": "vllm"}
    assert _one(duration, **{"gen_ai.request.model": "flaky", "error.type": "connect"}).count == 3
    assert _one(duration, **{"gen_ai.request.model": "rchat"}).count == 3
    usage = points(export, "gen_ai.client.token.usage")
    chat_in = _one(usage, **{"gen_ai.request.model": "chat", "gen_ai.token.type": "input"})
    chat_out = _one(usage, **{"gen_ai.request.model": "chat", "gen_ai.token.type": "output"})
    assert (chat_in.count, chat_in.sum, chat_out.count, chat_out.sum) == (2, 20.0, 2, 12.0)  # the fake: 10 in, 6 out
    assert chat_in.bounds == tuple(float(b) for b in facts.TOKEN_BUCKETS)
    (ttfc,) = points(export, "gen_ai.client.operation.time_to_first_chunk")  # the one stream
    assert ttfc.count == 1 and ttfc.attributes["gen_ai.request.model"] == "chat" and 0 < ttfc.sum < 5

    # /metrics: the same series under Prometheus names, same values
    scraped = _prometheus(text)
    compared = 0
    for name in metric_names(export):
        instrument = GATEWAY.get(name) or GATEWAY[facts.GATEWAY_PREFIX + name.removeprefix(facts.RAY_PREFIX)]
        prom = facts.prometheus_name(instrument).replace(
            facts.prometheus_label(facts.GATEWAY_PREFIX), facts.prometheus_label(facts.RAY_PREFIX)) \
            if name.startswith(facts.RAY_PREFIX) else facts.prometheus_name(instrument)
        if instrument.kind == "gauge":
            continue  # point-in-time values (in-flight, endpoints up) may move between scrape and export
        for p in points(export, name):
            labels = frozenset((facts.prometheus_label(k), str(v)) for k, v in p.attributes.items())
            if instrument.kind == "counter":
                assert scraped[(prom, labels)] == p.value, (prom, labels)
            else:
                assert scraped[(prom + "_count", labels)] == p.count, (prom, labels)
                assert scraped[(prom + "_sum", labels)] == pytest.approx(p.sum)
            compared += 1
    assert compared >= 25
    assert "llm_ray_requests_total" in text
    assert SECRET not in caplog.text and receiver.url not in caplog.text


@pytest.mark.parametrize("mode", ["refused", "status:400"])
def test_a_collector_that_is_down_costs_one_warning_and_no_requests(tmp_path, caplog, monkeypatch, mode):
    caplog.set_level(logging.INFO, logger="vilms.gateway")
    monkeypatch.setattr(facts, "EXPORT_TIMEOUT_S", 1.5)  # the SDK retries a refused connection until then

    async def scenario(url: str):  # type: ignore[no-untyped-def]
        fake = await FakeVLLM().start()
        doc = routes_doc({"vllm": {"engine": "vllm", "endpoints": [fake.url]}}, {"chat": {"backend": "vllm", "model": MODEL}},
                         telemetry=_otlp())
        try:
            async with gateway(tmp_path, doc, environ={"OTLP_BASE": url, "OTLP_TOKEN": SECRET}) as gw:
                deadline = time.monotonic() + 2.6  # two failed periodic exports, then the final one
                while time.monotonic() < deadline:
                    status, _, _ = await gw.post("/v1/chat/completions", _chat("chat"))
                    assert status == 200
                    await asyncio.sleep(0.05)
        finally:
            await fake.stop()

    if mode == "refused":
        url = f"http://127.0.0.1:{free_port()}"
        run(scenario(url))
    else:
        with Receiver(mode) as receiver:
            url = receiver.url
            run(scenario(url))
            assert len(receiver.received) >= 2  # the exports kept being tried
    warnings = [r for r in caplog.records if "OTLP metrics export failing" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert url not in caplog.text and SECRET not in caplog.text
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]


def test_a_hanging_collector_is_skipped_and_bounded(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="vilms.gateway")
    monkeypatch.setattr(facts, "EXPORT_TIMEOUT_S", 1.5)

    async def scenario(url: str):  # type: ignore[no-untyped-def]
        fake = await FakeVLLM().start()
        doc = routes_doc({"vllm": {"engine": "vllm", "endpoints": [fake.url]}}, {"chat": {"backend": "vllm", "model": MODEL}},
                         telemetry=_otlp())
        slowest = 0.0
        try:
            async with gateway(tmp_path, doc, environ={"OTLP_BASE": url}) as gw:
                deadline = time.monotonic() + 2.3
                while time.monotonic() < deadline:
                    t0 = time.monotonic()
                    status, _, _ = await gw.post("/v1/chat/completions", _chat("chat"))
                    slowest = max(slowest, time.monotonic() - t0)
                    assert status == 200
                    await asyncio.sleep(0.05)
                stopping = time.monotonic()
        finally:
            await fake.stop()
        return slowest, time.monotonic() - stopping

    with Receiver("hang") as receiver:
        slowest, shutdown = run(scenario(receiver.url))
        received = len(receiver.received)
    assert slowest < 1.0  # requests never wait for the exporter (a blocked one would take >= 1.5 s)
    assert shutdown < 2 * 1.5 + 1.0  # the final export waits at most the export timeout (twice: busy, then final)
    assert received >= 1
    assert len([r for r in caplog.records if "OTLP metrics export failing" in r.getMessage()]) == 1  # once per outage


def test_an_unset_endpoint_variable_means_no_export_and_one_warning(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vilms.gateway")

    async def scenario():  # type: ignore[no-untyped-def]
        fake = await FakeVLLM().start()
        doc = routes_doc({"vllm": {"engine": "vllm", "endpoints": [fake.url]}}, {"chat": {"backend": "vllm", "model": MODEL}},
                         telemetry=_otlp())
        try:
            async with gateway(tmp_path, doc, environ={"OTLP_TOKEN": SECRET}) as gw:
                status, _, _ = await gw.post("/v1/chat/completions", _chat("chat"))
                assert status == 200
                _, _, text = await gw.get("/metrics")
                assert "gen_ai_client_operation_duration_seconds_count" in text
        finally:
            await fake.stop()

    run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "OTLP_BASE, which is unset or empty: no metrics export" in m]
    assert SECRET not in caplog.text


class RenamingVLLM(FakeVLLM):
    """A vLLM whose answers name the model differently from the request (as a served-model alias does)."""

    answer_as = "Qwen/Qwen2.5-1.5B-Instruct"

    async def _enter(self, request):  # type: ignore[no-untyped-def]
        body = await super()._enter(request)
        body["model"] = self.answer_as
        return body


def test_shutdown_sends_the_final_export_gzip_and_the_engines_model_name(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")  # the SDK's own setting: the receiver gunzips

    async def scenario(url: str):  # type: ignore[no-untyped-def]
        fake = await RenamingVLLM(models=(RenamingVLLM.answer_as,)).start()
        doc = routes_doc({"vllm": {"engine": "vllm", "endpoints": [fake.url]}}, {"chat": {"backend": "vllm", "model": MODEL}},
                         telemetry=_otlp(interval_s=3600.0))
        try:
            async with gateway(tmp_path, doc, environ={"OTLP_BASE": url}) as gw:
                for stream in (False, True, False):
                    status, _, _ = await gw.post("/v1/chat/completions", _chat("chat", stream=stream))
                    assert status == 200
        finally:
            await fake.stop()

    with Receiver() as receiver:
        run(scenario(receiver.url))
    (only,) = receiver.received  # no periodic export within the hour: the one sent on shutdown
    assert only.headers.get("content-encoding") == "gzip"
    assert "x-collector-token" not in only.headers  # its variable is unset: the header is left out
    assert _one(points(only.request, "vilms.gateway.requests"), status="200").value == 3
    (duration,) = points(only.request, "gen_ai.client.operation.duration")
    assert duration.count == 3 and duration.attributes["gen_ai.response.model"] == RenamingVLLM.answer_as
    assert duration.attributes["gen_ai.request.model"] == "chat"


def test_an_outage_is_logged_once_and_its_end_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vilms.gateway")

    async def scenario(receiver: Receiver):  # type: ignore[no-untyped-def]
        fake = await FakeVLLM().start()
        doc = routes_doc({"vllm": {"engine": "vllm", "endpoints": [fake.url]}}, {"chat": {"backend": "vllm", "model": MODEL}},
                         telemetry=_otlp())
        try:
            async with gateway(tmp_path, doc, environ={"OTLP_BASE": receiver.url}) as gw:
                assert (await gw.post("/v1/chat/completions", _chat("chat")))[0] == 200
                for _ in range(100):  # two refused exports (interval 1 s)
                    if len(receiver.received) >= 2:
                        break
                    await asyncio.sleep(0.1)
                receiver.mode = "ok"
                seen = len(receiver.received)
                for _ in range(100):  # one accepted
                    if len(receiver.received) > seen:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.2)
        finally:
            await fake.stop()

    with Receiver("status:400") as receiver:
        run(scenario(receiver))
    messages = [r.getMessage() for r in caplog.records if r.name == "vilms.gateway"]
    assert len([m for m in messages if m.startswith("OTLP metrics export failing")]) == 1, messages
    assert len([m for m in messages if m.startswith("OTLP metrics export recovered")]) == 1, messages
