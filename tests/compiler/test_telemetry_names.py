"""Prometheus names of the metric table follow prometheus/otlptranslator, the translation an
OpenTelemetry Collector's Prometheus exporter and Prometheus's OTLP receiver apply, so a series
reaches Prometheus under the name the dashboards query whichever way it travels."""

from __future__ import annotations

import pytest

from vilms.compiler.facts.telemetry import GATEWAY, TRAINER, Instrument, prometheus_name


@pytest.mark.parametrize(("name", "kind", "unit", "expected"), [
    ("gen_ai.client.operation.duration", "histogram", "s", "gen_ai_client_operation_duration_seconds"),
    ("gen_ai.client.token.usage", "histogram", "{token}", "gen_ai_client_token_usage"),
    ("vilms.gateway.requests", "counter", "{request}", "vilms_gateway_requests_total"),
    ("x.cpu.utilization", "gauge", "1", "x_cpu_utilization_ratio"),  # otlptranslator: unit 1 on a gauge
    ("x.hits", "counter", "1", "x_hits_total"),  # ... but not on a counter
    ("vilms.train.throughput", "gauge", "{token}/s", "vilms_train_throughput_per_second"),
    ("x.rate", "gauge", "By/s", "x_rate_bytes_per_second"),
    ("vilms.train.peak_rss", "gauge", "By", "vilms_train_peak_rss_bytes"),
    ("x.wait_seconds", "histogram", "s", "x_wait_seconds"),  # the unit is not repeated
])
def test_names_follow_the_collector_translation(name, kind, unit, expected):
    assert prometheus_name(Instrument(name, kind, unit, "", ())) == expected


def test_every_name_in_the_table_is_unique_and_no_trainer_gauge_reads_as_a_ratio():
    names = [prometheus_name(i) for i in GATEWAY + TRAINER]
    assert len(names) == len(set(names))
    assert not [n for n in names if n.endswith("_ratio")]
