"""docs/render_dashboards.py's PromQL evaluator, which draws the dashboard pictures: it reads every
query the dashboards hold, and computes rate(), increase() and histogram_quantile() as Prometheus does."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "render_dashboards.py"
_spec = importlib.util.spec_from_file_location("render_dashboards", SCRIPT)
assert _spec and _spec.loader
render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render)


def _scrape(text: str):
    return render.parse_exposition(text)


def test_every_dashboard_query_has_a_shape_the_script_evaluates():
    for path in sorted(render.BOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                assert render.evaluate(target["expr"], []) == {}, target["expr"]


def test_an_unknown_shape_stops_the_script():
    with pytest.raises(ValueError, match="cannot evaluate"):
        render.evaluate("sum(x) / sum(y)", [])


def test_histogram_quantile_interpolates_like_prometheus():
    # rank 0.5 * 40 = 20 falls in (0.1, 0.5] holding counts 10..30: 0.1 + 0.4 * (20 - 10) / 20
    assert render._quantile(0.5, {0.1: 10, 0.5: 30, 1.0: 40, math.inf: 40}) == pytest.approx(0.3)
    assert render._quantile(0.99, {0.1: 0, 1.0: 0, math.inf: 5}) == 1.0  # in +Inf: the highest finite bound
    assert math.isnan(render._quantile(0.5, {0.1: 0, math.inf: 0}))


def test_rate_sum_by_and_quantile_over_scrapes():
    def scrape(n: int) -> str:
        return "\n".join([
            f'vilms_gateway_requests_total{{alias="a",status="200"}} {10 * n}',
            f'vilms_gateway_requests_total{{alias="a",status="500"}} {n}',
            f'vilms_gateway_requests_total{{alias="b",status="200"}} {2 * n}',
            f'vilms_gateway_request_duration_seconds_bucket{{alias="a",le="0.1"}} {n}',
            f'vilms_gateway_request_duration_seconds_bucket{{alias="a",le="1.0"}} {3 * n}',
            f'vilms_gateway_request_duration_seconds_bucket{{alias="a",le="+Inf"}} {3 * n}',
        ])

    samples = [(float(t), _scrape(scrape(t))) for t in range(7)]
    by_alias = render.evaluate('sum by (alias) (rate(vilms_gateway_requests_total{namespace="$namespace"}[$__rate_interval]))',
                               samples)
    assert by_alias[(("alias", "a"),)][-1] == (6.0, pytest.approx(11.0))
    assert by_alias[(("alias", "b"),)][-1] == (6.0, pytest.approx(2.0))
    errors = render.evaluate('sum by (status) (rate(vilms_gateway_requests_total{status=~"5.."}[5m]))', samples)
    assert list(errors) == [(("status", "500"),)] and errors[(("status", "500"),)][-1][1] == pytest.approx(1.0)
    p50 = render.evaluate("histogram_quantile(0.5, sum by (le, alias) (rate(vilms_gateway_request_duration_seconds_bucket"
                          '{alias=~"$alias"}[$__rate_interval])))', samples)
    # per second: 1 below 0.1 s, 3 below 1 s: rank 1.5 in (0.1, 1.0]: 0.1 + 0.9 * 0.5 / 2
    assert p50[(("alias", "a"),)][-1][1] == pytest.approx(0.325)
    total = render.evaluate("sum by (alias) (increase(vilms_gateway_requests_total[1h]))", samples)
    assert total[(("alias", "a"),)][-1][1] == pytest.approx(66.0)
