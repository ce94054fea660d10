"""The Grafana dashboards the chart ships (templates/helm/chart/dashboards/*.json): every series and
label they query is one ViLMS or vLLM emits, the layout is sound, and a typo anywhere fails.

ViLMS's series come from the one table, compiler/facts/telemetry.py, through its Prometheus
naming (``prometheus_name``, ``prometheus_label``, ``ray_name``); vLLM's from the list below.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.promql import PromQLError, legend_labels, parse, parse_variable_query, tokenize
from vilms.compiler.facts import telemetry
from vilms.compiler.facts import vllm as vllm_facts
from vilms.compiler.render import helm

DASHBOARDS_DIR = Path(helm.__file__).resolve().parents[2] / "templates" / "helm" / "chart" / helm.DASHBOARDS_DIR
GRID_COLUMNS = 24
TARGET_LABELS = {"namespace", "pod", "job", "instance"}  # added by Prometheus (the chart's monitors) to every series
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__interval_ms"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# vLLM's series (vllm/v1/metrics/loggers.py, PrometheusStatLogger, vllm-project/vllm at 005a810b): every one has
# the labels model_name and engine; request_success also finished_reason. prometheus_client adds _total to
# counters. /work/shared/reference names only vllm:num_requests_waiting, so the list is taken from vLLM's source.
VLLM_LABELS = {"model_name", "engine"}
VLLM_SERIES: dict[str, tuple[str, frozenset[str]]] = {
    "vllm:num_requests_running": ("gauge", frozenset()),
    "vllm:num_requests_waiting": ("gauge", frozenset()),
    "vllm:kv_cache_usage_perc": ("gauge", frozenset()),
    "vllm:prefix_cache_queries_total": ("counter", frozenset()),
    "vllm:prefix_cache_hits_total": ("counter", frozenset()),
    "vllm:num_preemptions_total": ("counter", frozenset()),
    "vllm:prompt_tokens_total": ("counter", frozenset()),
    "vllm:generation_tokens_total": ("counter", frozenset()),
    "vllm:request_success_total": ("counter", frozenset({"finished_reason"})),
    "vllm:request_prompt_tokens": ("histogram", frozenset()),
    "vllm:request_generation_tokens": ("histogram", frozenset()),
    "vllm:time_to_first_token_seconds": ("histogram", frozenset()),
    "vllm:time_per_output_token_seconds": ("histogram", frozenset()),
    "vllm:e2e_request_latency_seconds": ("histogram", frozenset()),
    "vllm:request_queue_time_seconds": ("histogram", frozenset()),
    "vllm:request_inference_time_seconds": ("histogram", frozenset()),
    "vllm:request_prefill_time_seconds": ("histogram", frozenset()),
    "vllm:request_decode_time_seconds": ("histogram", frozenset()),
}


def emitted_series() -> dict[str, frozenset[str]]:
    """Every series a Prometheus holds from ViLMS and vLLM → the label names it carries."""
    out: dict[str, frozenset[str]] = {}

    def add(name: str, kind: str, labels: set[str]) -> None:
        if kind == "histogram":
            for suffix in HISTOGRAM_SUFFIXES:
                out[name + suffix] = frozenset(labels | TARGET_LABELS | ({"le"} if suffix == "_bucket" else set()))
        else:
            out[name] = frozenset(labels | TARGET_LABELS)

    for instrument in telemetry.GATEWAY + telemetry.TRAINER:
        labels = {telemetry.prometheus_label(a) for a in instrument.attributes}
        add(telemetry.prometheus_name(instrument), instrument.kind, labels)
        ray = telemetry.ray_name(instrument)
        if ray is not None:
            as_ray = telemetry.Instrument(ray, instrument.kind, instrument.unit, instrument.description, instrument.attributes)
            add(telemetry.prometheus_name(as_ray), instrument.kind, labels)
    for name, (kind, extra) in VLLM_SERIES.items():
        add(name, kind, set(VLLM_LABELS | extra))
    return out


def _variables_used(text: str) -> set[str]:
    return {m.group(1) or m.group(2) or m.group(3) for m in re.finditer(r"\$\{(\w+)[^}]*\}|\$(\w+)|\[\[(\w+)\]\]", text)}


def query_problems(expr: str, series: dict[str, frozenset[str]], legend: str = "") -> list[str]:
    """What is wrong with one panel query: unknown series, labels a series does not carry, a legend
    naming a label the result does not have, unreadable PromQL."""
    try:
        query = parse(expr)
    except PromQLError as exc:
        return [f"{expr}: {exc}"]
    problems = []
    for sel in query.selectors:
        if sel.metric not in series:
            problems.append(f"{expr}: {sel.metric} is not emitted")
            continue
        for label in sorted(sel.labels - series[sel.metric]):
            problems.append(f"{expr}: {sel.metric} has no label {label}")
    for labels, metrics in query.groupings:
        for metric in metrics:
            for label in sorted(labels - series.get(metric, labels)):
                problems.append(f"{expr}: grouped by {label}, which {metric} does not carry")
    if not query.selectors:
        problems.append(f"{expr}: queries no series")
    kept = set().union(*(labels for labels, _ in query.groupings)) if query.groupings else \
        set().union(*(series.get(s.metric, frozenset()) for s in query.selectors))
    for label in sorted(legend_labels(legend) - kept):
        problems.append(f"{expr}: the legend names {label}, which the result does not carry")
    return problems


def variable_problems(query: str, series: dict[str, frozenset[str]]) -> list[str]:
    try:
        parsed, label = parse_variable_query(query)
    except PromQLError as exc:
        return [str(exc)]
    if parsed is None:
        return [f"{query}: label_values without a series lists every series's labels"]
    problems = query_problems(query[query.index("(") + 1:query.rindex(",")], series)
    for sel in parsed.selectors:
        if label not in series.get(sel.metric, frozenset({label})):
            problems.append(f"{query}: {sel.metric} has no label {label}")
    return problems


def dashboard_problems(board: dict, series: dict[str, frozenset[str]]) -> list[str]:
    problems: list[str] = []
    variables = {v["name"]: v for v in board["templating"]["list"]}
    if variables.get("datasource", {}).get("type") != "datasource":
        problems.append("no datasource template variable")
    for name, var in variables.items():
        if var["type"] == "query":
            problems += variable_problems(var["query"]["query"], series)
            if var["datasource"] != {"type": "prometheus", "uid": "${datasource}"}:
                problems.append(f"variable {name} does not query the $datasource")
    defined = set(variables) | GRAFANA_BUILTINS
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        if panel["datasource"] != {"type": "prometheus", "uid": "${datasource}"}:
            problems.append(f"panel {panel['title']!r} does not use the $datasource variable")
        if not panel["targets"]:
            problems.append(f"panel {panel['title']!r} queries nothing")
        for target in panel["targets"]:
            problems += query_problems(target["expr"], series, target.get("legendFormat", ""))
            for var in sorted(_variables_used(target["expr"]) - defined):
                problems.append(f"{target['expr']}: ${var} is not a template variable")
    return problems


def _boards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def _exprs(board: dict) -> list[str]:
    return [t["expr"] for p in board["panels"] if p["type"] != "row" for t in p["targets"]]


def _queried(board: dict) -> set[str]:
    return {s.metric for e in _exprs(board) for s in parse(e).selectors}


def test_the_chart_ships_a_dashboard_for_each_toggle():
    assert sorted(_boards()) == sorted(helm.DASHBOARDS)


@pytest.mark.parametrize("name", helm.DASHBOARDS)
def test_every_query_reads_series_and_labels_that_are_emitted(name):
    assert dashboard_problems(_boards()[name], emitted_series()) == []


@pytest.mark.parametrize("name", helm.DASHBOARDS)
def test_layout_is_a_grafana_dashboard(name):
    board = _boards()[name]
    assert board["schemaVersion"] == _grafana_schema_version()
    assert board["uid"] == f"vilms-{name}" and board["title"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    cells: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= GRID_COLUMNS, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]
        if panel["type"] != "row":
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
            assert [t["refId"] for t in panel["targets"]] == [chr(65 + i) for i in range(len(panel["targets"]))]
    # deterministic: the file is its own canonical dump (sorted keys, two spaces), as exported and normalised
    path = DASHBOARDS_DIR / f"{name}.json"
    assert path.read_text(encoding="utf-8") == json.dumps(board, indent=2, sort_keys=True) + "\n"


def _grafana_schema_version() -> int:
    from grafana_foundation_sdk.models.dashboard import Dashboard

    return Dashboard().schema_version  # the schema's own default: what the Grafana it was generated from writes


def grafana_round_trip(board: dict) -> dict:
    """The dashboard through Grafana's own types (grafana-foundation-sdk, generated from Grafana's schemas:
    the dashboard, the timeseries and stat panels' options and field config, Prometheus queries) and back."""
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()
    return json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))


# keys Grafana's editor writes into an export that its schema does not model (a query variable's `definition`
# echoes its query); everything else an export carries must survive the round trip
UNMODELLED = {"definition"}


def lost(before: object, after: object, path: str = "") -> list[str]:
    """Keys Grafana's types do not know (dropped on the way through) and values they changed."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [p for k, v in before.items() if not (k in UNMODELLED and k not in after)
                for p in ([f"{path}/{k} unknown to Grafana"] if k not in after else lost(v, after[k], f"{path}/{k}"))]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [p for i, (x, y) in enumerate(zip(before, after, strict=True)) for p in lost(x, y, f"{path}[{i}]")]
    return [] if before == after else [f"{path}: {before!r} became {after!r}"]


@pytest.mark.parametrize("name", helm.DASHBOARDS)
def test_grafanas_own_types_keep_every_key_and_value(name):
    board = _boards()[name]
    assert lost(board, grafana_round_trip(board)) == []


@pytest.mark.parametrize(("where", "key"), [((), "refersh"), (("panels", 1), "gridpos"), (("panels", 1, "options", "legend"), "displayMod"),
                                            (("panels", 1, "targets", 0), "legendFromat"), (("templating", "list", 0), "lable")])
def test_a_misspelled_key_is_unknown_to_grafana(where, key):
    board = _boards()["gateway"]
    node = board
    for step in where:
        node = node[step]
    node[key] = "x"
    assert f"/{key} unknown to Grafana" in " ".join(lost(board, grafana_round_trip(board)))


def test_every_series_a_running_gateway_exposes_is_in_the_table_the_dashboards_are_checked_against(tmp_path):
    """The other direction, on the real exporter: a gateway in front of a fake vLLM (a request answered, a
    fallback from a closed port, a key) is scraped, and every sample's name and labels must be in
    emitted_series(); otherwise a dashboard checked against the table could query what /metrics does not say."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
    from gateway_fakes import FakeVLLM
    from gateway_harness import gateway, routes_doc, run

    async def body() -> str:
        fake = await FakeVLLM().start()
        doc = routes_doc({"v": {"engine": "vllm", "endpoints": [fake.url]}, "gone": {"engine": "vllm", "endpoints": ["http://127.0.0.1:9"]}},
                         {"chat": {"backend": "v", "model": "qwen2.5-1.5b"},
                          "big": {"backend": "gone", "model": "qwen2.5-1.5b", "fallbacks": ["chat"]}},
                         keys={"web": {"env": "WEB_KEY", "aliases": None, "rpm": None, "tpm": None}}, retries=1)
        try:
            async with gateway(tmp_path, doc, environ={"WEB_KEY": "sk-web-dashboards-test"}) as gw:
                auth = {"Authorization": "Bearer sk-web-dashboards-test"}
                for model in ("chat", "big"):
                    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
                    assert (await gw.post("/v1/chat/completions", body, headers=auth))[0] == 200
                assert (await gw.post("/v1/chat/completions", {"model": "chat", "messages": []}))[0] == 401
                _, _, text = await gw.get("/metrics")
        finally:
            await fake.stop()
        return text

    series = emitted_series()
    samples = [line for line in run(body()).splitlines() if line and not line.startswith("#")]
    seen = set()
    for line in samples:
        name, _, rest = line.partition("{")
        name = name.split(" ")[0]
        labels = set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', rest)) if rest else set()
        assert name in series, f"/metrics exposes {name}, which compiler/facts/telemetry.py does not declare"
        assert labels <= series[name], f"{name} carries {sorted(labels - series[name])}, not declared"
        seen.add(name)
    for wanted in ("vilms_gateway_requests_total", "vilms_gateway_fallbacks_total", "vilms_gateway_key_tokens_total",
                   "vilms_gateway_request_duration_seconds_bucket", "vilms_gateway_endpoint_up"):
        assert wanted in seen, wanted


def test_the_gateway_dashboard_shows_what_the_issue_asks_for():
    g = {i.name: i for i in telemetry.GATEWAY}
    wanted = ["vilms.gateway.requests", "vilms.gateway.request.duration", "gen_ai.client.operation.duration",
              "gen_ai.client.operation.time_to_first_chunk", "vilms.gateway.upstream.errors", "vilms.gateway.retries",
              "vilms.gateway.fallbacks", "vilms.gateway.endpoint.rotations", "vilms.gateway.endpoint.ejections",
              "vilms.gateway.queue.rejections", "gen_ai.client.token.usage", "vilms.gateway.key.tokens",
              "vilms.gateway.endpoint.up"]
    queried = _queried(_boards()["gateway"])
    for name in wanted:
        base = telemetry.prometheus_name(g[name])
        assert {base, base + "_bucket", base + "_sum", base + "_count"} & queried, name
    exprs = " ".join(_exprs(_boards()["gateway"]))
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le, alias) (rate(vilms_gateway_request_duration_seconds_bucket" in exprs
    assert any(m.startswith("llm_ray_") for m in queried)


def test_the_training_dashboard_shows_every_trainer_metric():
    queried = _queried(_boards()["training"])
    assert {telemetry.prometheus_name(i) for i in telemetry.TRAINER} == queried


def test_the_vllm_dashboard_keeps_the_engine_panels():
    queried = _queried(_boards()["vllm"])
    kept = {getattr(vllm_facts, n) for n in dir(vllm_facts) if n.startswith("METRIC_")}
    assert {m.removesuffix("_bucket") for m in queried} >= kept


# --- the check fails on typos


def _series_names(expr: str) -> list[str]:
    return [s.metric for s in parse(expr).selectors]


def _all_targets() -> list[tuple[str, str]]:
    return [(t["expr"], t.get("legendFormat", "")) for b in _boards().values() for p in b["panels"] if p["type"] != "row"
            for t in p["targets"]]


@pytest.mark.parametrize(("before", "after", "problem"), [
    ("vilms_gateway_requests_total", "vilms_gateway_request_total", "vilms_gateway_request_total is not emitted"),
    ("gen_ai_client_token_usage_sum", "gen_ai_client_tokens_usage_sum", "is not emitted"),
    ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "is not emitted"),  # renamed in vLLM 0.9
    ("vilms_train_peak_rss_bytes", "vilms_train_peak_rss", "is not emitted"),
    ("sum by (alias)", "sum by (aliases)", "grouped by aliases"),
    ("sum by (gen_ai_request_model,", "sum by (gen_ai_request_models,", "grouped by gen_ai_request_models"),
    ('alias=~"$alias"', 'alais=~"$alias"', "has no label alais"),
    ("(rate(", "(rat(", "unknown function 'rat'"),
    ("sum by (key, kind)", "sum by (key, kinds)", "grouped by kinds"),
])
def test_a_typo_in_any_dashboard_fails(before, after, problem):
    series = emitted_series()
    boards = {n: json.loads(json.dumps(b).replace(json.dumps(before)[1:-1], json.dumps(after)[1:-1], 1)) for n, b in _boards().items()}
    changed = [n for n in boards if boards[n] != _boards()[n]]
    assert changed, f"{before!r} is in no dashboard"
    problems = [p for n in changed for p in dashboard_problems(boards[n], series)]
    assert any(problem in p for p in problems), problems


def test_a_legend_naming_a_dropped_label_fails():
    series = emitted_series()
    assert query_problems('sum by (alias) (rate(vilms_gateway_requests_total[5m]))', series, "{{status}}") == [
        "sum by (alias) (rate(vilms_gateway_requests_total[5m])): the legend names status, which the result does not carry"]


def test_an_undefined_variable_fails():
    board = _boards()["gateway"]
    board["panels"][1]["targets"][0]["expr"] = board["panels"][1]["targets"][0]["expr"].replace("$namespace", "$namespaces")
    assert any("$namespaces is not a template variable" in p for p in dashboard_problems(board, emitted_series()))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_one_character_change_to_a_queried_series_is_caught(data):
    series = emitted_series()
    expr, legend = data.draw(st.sampled_from(_all_targets()))
    name = data.draw(st.sampled_from(_series_names(expr)))
    pos = data.draw(st.integers(0, len(name) - 1))
    op = data.draw(st.sampled_from(["delete", "replace", "insert"]))
    char = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz_:0123456789"))
    typo = {"delete": name[:pos] + name[pos + 1:], "replace": name[:pos] + char + name[pos + 1:],
            "insert": name[:pos] + char + name[pos:]}[op]
    if typo == name or typo in series or not re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", typo):
        return  # the same series, another real series, or not a name at all (the tokenizer's own test)
    broken = re.sub(rf"(?<![A-Za-z0-9_:]){re.escape(name)}(?![A-Za-z0-9_:])", typo, expr)
    assert query_problems(broken, series, legend), broken


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_one_character_change_to_a_label_is_caught(data):
    """The same for label names, in a matcher or a by (...) clause."""
    series = emitted_series()
    candidates = [(e, leg) for e, leg in _all_targets() if re.search(r"\b(by \(|[a-z_]+=~?\")", e)]
    expr, legend = data.draw(st.sampled_from(candidates))
    query = parse(expr)
    labels = sorted({lab for s in query.selectors for lab in s.labels} | {lab for group, _ in query.groupings for lab in group})
    label = data.draw(st.sampled_from(labels))
    pos = data.draw(st.integers(0, len(label) - 1))
    char = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz_"))
    typo = label[:pos] + char + label[pos + 1:]
    metrics = [s.metric for s in query.selectors]
    if typo == label or any(typo in series[m] for m in metrics) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", typo):
        return  # unchanged, or another label these series really carry
    broken = re.sub(rf"(?<=[(, {{]){re.escape(label)}(?=[,)=!]|\s*[=!])", typo, expr)
    assert broken != expr, (label, expr)
    assert query_problems(broken, series, legend), broken


@pytest.mark.parametrize("expr", ['sum(rate(x[5m]', 'rate(x{a="b"[5m])', 'rate(x{a=}[5m])', "sum by alias (x)",
                                  "rate(x[five])", 'x{a="b" c="d"}', "x # y",
                                  "rate(x[5m]", "x)", "histogram_quantile(0.5, sum by (le) (rate(x[5m])))"])
def test_unreadable_promql_is_a_problem_not_a_pass(expr):
    problems = query_problems(expr, {"x": frozenset({"a", "c"})})
    assert problems and all("not emitted" not in p for p in problems), problems


def test_tokens_cover_every_character_of_every_query():
    for expr, _ in _all_targets():
        assert "".join(t.text for t in tokenize(expr)) == re.sub(r"\s+", "", expr)
