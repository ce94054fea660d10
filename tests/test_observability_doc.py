"""docs/observability.md against what ViLMS emits: the metric tables are the facts table
(compiler/facts/telemetry.py) rendered, every attribute is explained once, and the access-log
fields are the ones a real gateway writes (a request through fake engines, a fallback and a
stream, captured from the ``vilms.gateway.access`` logger)."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))  # gateway_fakes, gateway_harness

from gateway_fakes import FakeVLLM  # noqa: E402
from gateway_harness import gateway, routes_doc, run  # noqa: E402

from vilms.compiler.facts import telemetry  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "observability.md"
UNITS = {"s": "seconds", "By": "bytes", "1": "1 (dimensionless)"}


def _unit(unit: str) -> str:
    return UNITS.get(unit, unit.replace("{", "").replace("}", "") if unit.startswith("{") else unit)


def metrics_table(instruments: tuple[telemetry.Instrument, ...], mlflow: bool) -> str:
    head = "| OpenTelemetry name | Prometheus series | kind | unit | attributes |" + (" MLflow key |" if mlflow else "") + " what |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for i in instruments:
        series = telemetry.prometheus_name(i)
        if i.kind == "histogram":
            series += "_bucket/_sum/_count"
        ray = telemetry.ray_name(i)
        if ray is not None:
            ray_series = telemetry.prometheus_name(telemetry.Instrument(ray, i.kind, i.unit, "", ()))
            series += f"; Ray: `{ray_series}`"
        attrs = ", ".join(f"`{a}`" for a in i.attributes) or "none"
        cells = [f"`{i.name}`", f"`{series}`".replace("; Ray: `", "`; Ray: `").replace("``", "`"), i.kind, _unit(i.unit), attrs]
        if mlflow:
            cells.append(f"`{i.mlflow_key}`" if i.mlflow_key else "(steps logged as MLflow's step)")
        cells.append(i.description.replace("|", "\\|"))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _section(text: str, name: str) -> str:
    m = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    assert m, f"docs/observability.md has no {name} section"
    return m.group(1)


def _first_column(table: str) -> list[str]:
    return [re.sub(r"`", "", line.split("|")[1]).strip() for line in table.splitlines()[2:]]


def test_gateway_metrics_table_is_the_facts_table():
    assert _section(DOC.read_text(encoding="utf-8"), "gateway-metrics") == metrics_table(telemetry.GATEWAY, mlflow=False)


def test_trainer_metrics_table_is_the_facts_table():
    assert _section(DOC.read_text(encoding="utf-8"), "trainer-metrics") == metrics_table(telemetry.TRAINER, mlflow=True)


def test_every_attribute_is_explained_with_its_unit_and_nothing_else():
    table = _section(DOC.read_text(encoding="utf-8"), "attributes")
    documented = _first_column(table)
    emitted = {a for i in telemetry.GATEWAY + telemetry.TRAINER for a in i.attributes}
    assert len(documented) == len(set(documented))
    assert set(documented) == emitted
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 4 and all(cells), line  # attribute, Prometheus label, unit or values, meaning
        assert cells[1] == f"`{telemetry.prometheus_label(cells[0].strip('`'))}`", line


def test_access_log_fields_are_what_the_gateway_writes(tmp_path, caplog):
    """A plain request, a stream and a fallback: every field the access log wrote is documented, and
    every documented field was written."""

    async def body() -> list[str]:
        fake = await FakeVLLM().start()
        doc = routes_doc({"v": {"engine": "vllm", "endpoints": [fake.url]}, "dead": {"engine": "vllm", "endpoints": ["http://127.0.0.1:9"]}},
                         {"chat": {"backend": "v", "model": "qwen2.5-1.5b"},
                          "big": {"backend": "dead", "model": "qwen2.5-1.5b", "fallbacks": ["chat"]}}, retries=0)
        try:
            async with gateway(tmp_path, doc) as gw:
                with caplog.at_level(logging.INFO, logger="vilms.gateway.access"):
                    chat = {"messages": [{"role": "user", "content": "Hi"}]}
                    assert (await gw.post("/v1/chat/completions", {**chat, "model": "chat"}))[0] == 200
                    assert (await gw.post("/v1/chat/completions", {**chat, "model": "chat", "stream": True}))[0] == 200
                    assert (await gw.post("/v1/chat/completions", {**chat, "model": "big"}))[0] == 200
        finally:
            await fake.stop()
        return [r.getMessage() for r in caplog.records if r.name == "vilms.gateway.access"]

    lines = run(body())
    assert len(lines) == 3, lines
    written = {"route"} | {k for line in lines for k in re.findall(r" (\w+)=", line)}
    assert all(line.split(" ", 1)[0].startswith("/v1/") for line in lines)
    documented = set(_first_column(_section(DOC.read_text(encoding="utf-8"), "access-log")))
    assert documented == written


def test_every_dashboard_has_a_picture_in_the_doc():
    text = DOC.read_text(encoding="utf-8")
    for name in ("gateway", "training", "vllm"):
        picture = DOC.parent / "img" / f"dashboard-{name}.png"
        assert f"(img/dashboard-{name}.png)" in text and picture.is_file(), name
        assert picture.stat().st_size < 200_000, name
