#!/usr/bin/env python3
"""Draw docs/img/dashboard-{gateway,training,vllm}.png: each Grafana dashboard of the chart, laid
out from its own JSON (gridPos, titles, panel types, units, queries, legends) and plotted with
matplotlib from a real short run on this machine. These are not Grafana screenshots.

    python docs/render_dashboards.py [--seconds 40] [--out docs/img]

Data:

* gateway: the gateway (in process, on 127.0.0.1) in front of fake vLLM engines
  (tests/runtime/gateway_fakes.py): one healthy endpoint and one answering 500 in the same
  backend (retries, rotations, ejections), an alias on a closed port that falls back, two
  named keys, streaming and non-streaming requests, a small queue. ``/metrics`` is scraped
  every second and each panel's PromQL is evaluated over the scrapes;
* training: a tiny random Llama (trainers/tiny.py) trained for 40 steps by the real trainer;
  the series come from its checkpoints' state (loss and learning rate per step, wall time
  per step, peak RSS at each checkpoint), metrics.json (eval loss, tokens/s) and run.json
  (the gate); perplexity is exp(eval loss), as the trainer defines it;
* vLLM: there is no vLLM engine on this machine, so its panels say "no data".

A panel whose series the run did not produce says "no data". The evaluator knows the query
shapes the dashboards use (an aggregation of a selector, of rate()/increase() of a selector,
histogram_quantile of a summed rate of buckets) and stops on any other shape.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "runtime"))

BOARDS = REPO / "templates" / "helm" / "chart" / "dashboards"
RATE_WINDOW = 5  # scrapes in a rate() window (Grafana's $__rate_interval on a 1 s scrape)

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]  # (name, labels) → value, one scrape
Samples = list[tuple[float, Series]]  # (seconds since start, scrape)

# ---------------------------------------------------------------- Prometheus text and PromQL

_LINE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> Series:
    out: Series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise ValueError(f"cannot read {line!r}")
        labels = frozenset((k, v.replace('\\"', '"').replace("\\\\", "\\")) for k, v in _LABEL.findall(m[2] or ""))
        out[(m[1], labels)] = float(m[3])
    return out


_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_QUANTILE = re.compile(r"^histogram_quantile\(([0-9.]+), sum by \(([^)]*)\) \(rate\(([^{\[]+)(?:\{(.*)\})?\[[^\]]+\]\)\)\)$")
_AGG_FN = re.compile(r"^(sum|min|max|avg)(?: by \(([^)]*)\) )?\((rate|increase)\(([^{\[]+)(?:\{(.*)\})?\[([^\]]+)\]\)\)$")
_AGG = re.compile(r"^(sum|min|max|avg)(?: by \(([^)]*)\) )?\(([^{()]+)(?:\{(.*)\})?\)$")


def _matches(labels: frozenset[tuple[str, str]], matchers: str | None) -> bool:
    have = dict(labels)
    for name, op, value in _MATCHER.findall(matchers or ""):
        if "$" in value:
            continue  # a template variable: "All" here (there is one namespace, one of everything)
        got = have.get(name, "")
        ok = {"=": got == value, "!=": got != value, "=~": re.fullmatch(value, got) is not None,
              "!~": re.fullmatch(value, got) is None}[op]
        if not ok:
            return False
    return True


def _select(scrape: Series, metric: str, matchers: str | None) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (name, labels), v in scrape.items() if name == metric and _matches(labels, matchers)}


def _group(values: dict[frozenset[tuple[str, str]], float], by: list[str], agg: str) -> dict[tuple[str, ...], float]:
    groups: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for labels, v in values.items():
        have = dict(labels)
        groups[tuple(have.get(b, "") for b in by)].append(v)
    fn = {"sum": sum, "min": min, "max": max, "avg": lambda xs: sum(xs) / len(xs)}[agg]
    return {k: fn(v) for k, v in groups.items()}


def _rates(samples: Samples, i: int, metric: str, matchers: str | None, increase_all: bool) -> dict[frozenset[tuple[str, str]], float]:
    j = 0 if increase_all else max(0, i - RATE_WINDOW)
    if j == i:
        return {}
    now, then = _select(samples[i][1], metric, matchers), _select(samples[j][1], metric, matchers)
    dt = samples[i][0] - samples[j][0]
    out = {}
    for labels, v in now.items():
        delta = v - then.get(labels, 0.0)
        out[labels] = delta if increase_all else delta / dt
    return out


def _quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's histogram_quantile: linear interpolation inside the bucket holding rank q."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return math.nan
    rank, prev_bound, prev_count = q * total, 0.0, 0.0
    for b in bounds:
        if buckets[b] >= rank:
            if math.isinf(b):
                return prev_bound
            return prev_bound + (b - prev_bound) * (rank - prev_count) / max(buckets[b] - prev_count, 1e-12)
        prev_bound, prev_count = b, buckets[b]
    return math.nan


def evaluate(expr: str, samples: Samples) -> dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]:
    """One query over the scrapes → {group labels: [(t, value)]}."""
    out: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = defaultdict(list)
    if m := _QUANTILE.match(expr):
        q, by = float(m[1]), [b.strip() for b in m[2].split(",")]
        rest = [b for b in by if b != "le"]
        for i, (t, _) in enumerate(samples):
            per = _group(_rates(samples, i, m[3], m[4], False), by, "sum")
            hist: dict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
            for key, v in per.items():
                labels = dict(zip(by, key, strict=True))
                hist[tuple(labels[b] for b in rest)][float(labels["le"])] = v
            for key, buckets in hist.items():
                value = _quantile(q, buckets)
                if not math.isnan(value):
                    out[tuple(zip(rest, key, strict=True))].append((t, value))
        return out
    if m := _AGG_FN.match(expr):
        by = [b.strip() for b in (m[2] or "").split(",") if b.strip()]
        for i, (t, _) in enumerate(samples):
            for key, v in _group(_rates(samples, i, m[4], m[5], m[3] == "increase"), by, m[1]).items():
                out[tuple(zip(by, key, strict=True))].append((t, v))
        return out
    if m := _AGG.match(expr):
        by = [b.strip() for b in (m[2] or "").split(",") if b.strip()]
        for t, scrape in samples:
            values = _select(scrape, m[3].strip(), m[4])
            if values:
                for key, v in _group(values, by, m[1]).items():
                    out[tuple(zip(by, key, strict=True))].append((t, v))
        return out
    raise ValueError(f"the picture script cannot evaluate {expr!r}: teach evaluate() this shape")


def legend(fmt: str, labels: tuple[tuple[str, str], ...]) -> str:
    have = dict(labels)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: have.get(m[1], ""), fmt).strip() or "value"


# ---------------------------------------------------------------- data: the gateway


async def _gateway_run(seconds: float, tmp: Path) -> Samples:
    import aiohttp
    from gateway_fakes import FakeVLLM
    from gateway_harness import gateway, routes_doc

    model = "qwen2.5-1.5b"
    good, bad = await FakeVLLM(chunk_delay_s=0.01).start(), await FakeVLLM(fault="500").start()
    keys = {"web": {"env": "WEB_KEY", "aliases": None, "rpm": None, "tpm": None},
            "batch": {"env": "BATCH_KEY", "aliases": None, "rpm": None, "tpm": None}}
    environ = {"WEB_KEY": "sk-web-render-dashboards", "BATCH_KEY": "sk-batch-render-dashboards"}
    doc = routes_doc({"main": {"engine": "vllm", "endpoints": [good.url, bad.url]},
                      "gone": {"engine": "vllm", "endpoints": ["http://127.0.0.1:9"]}},
                     {"chat": {"backend": "main", "model": model}, "support": {"backend": "main", "model": model},
                      "big": {"backend": "gone", "model": model, "fallbacks": ["chat"]}},
                     keys=keys, retries=2, eject_after=2, cooldown_s=4.0, max_queue=6)
    rng = random.Random(7)
    samples: Samples = []
    try:
        async with gateway(tmp, doc, environ=environ) as gw:
            start = time.monotonic()
            stop = asyncio.Event()

            async def client(n: int) -> None:
                key = environ["WEB_KEY"] if n % 3 else environ["BATCH_KEY"]
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
                    while not stop.is_set():
                        phase = (time.monotonic() - start) / seconds
                        alias = rng.choices(["chat", "support", "big"], [5, 3, 1 + 3 * (0.4 < phase < 0.6)])[0]
                        body = {"model": alias, "stream": rng.random() < 0.4,
                                "messages": [{"role": "user", "content": "word " * rng.randint(5, 200)}]}
                        async with session.post(gw.url + "/v1/chat/completions", json=body) as resp:
                            await resp.read()
                        await asyncio.sleep(rng.uniform(0.02, 0.2) * (0.3 if 0.3 < phase < 0.7 else 1.0))

            workers = [asyncio.create_task(client(n)) for n in range(8)]
            while (now := time.monotonic() - start) < seconds:
                _, _, text = await gw.get("/metrics")
                samples.append((now, parse_exposition(text)))
                await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*workers)
    finally:
        await good.stop()
        await bad.stop()
    return samples


def gateway_samples(seconds: float) -> Samples:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_gateway_run(seconds, Path(tmp)))


# ---------------------------------------------------------------- data: a tiny training run


def training_samples() -> tuple[Samples, str]:
    from vilms.compiler.contracts.run_record import RUN_RECORD
    from vilms.compiler.layout import Layout
    from vilms.trainers.tiny import build_tiny_llama, write_tiny_project
    from vilms.trainers.trainer import train_adapter

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = write_tiny_project(root / "acme", build_tiny_llama(root / "model"),
                                     {"training": {"max_steps": 40, "save_steps": 10, "eval_steps": 10}})
        run_id = train_adapter(project, "tiny-v1", show_progress=False)
        run_dir = Layout(project.parent).artifacts / run_id
        metrics = json.loads((run_dir / "metrics.json").read_text())
        record = RUN_RECORD.load(run_dir / "run.json")
        states = [json.loads(p.read_text()) for p in sorted(run_dir.rglob("state.json"))]
    if not states:
        raise SystemExit("the tiny run left no checkpoint state.json to read per-step data from")
    final = max(states, key=lambda s: s["step"])
    clock = [0.0]
    for seconds in final["step_seconds"]:
        clock.append(clock[-1] + seconds)
    at = {step: clock[min(step, len(clock) - 1)] for step in range(final["step"] + 1)}
    labels = frozenset({("adapter", "tiny-v1"), ("run_id", run_id), ("base_model", "tiny")})
    by_step: dict[int, Series] = defaultdict(dict)
    for step, loss, lr in final["train_history"]:
        by_step[int(step)][("vilms_train_loss", labels)] = loss
        by_step[int(step)][("vilms_train_learning_rate", labels)] = lr
    for step in range(1, final["step"] + 1):
        by_step[step][("vilms_train_steps_total", labels)] = float(step)
    evals = {int(s): loss for s, loss in metrics["eval_history"]}
    for state in states:
        by_step[int(state["step"])][("vilms_train_peak_rss_bytes", labels)] = float(state["peak_rss_bytes"])
    last = final["step"]
    by_step[last][("vilms_train_peak_rss_bytes", labels)] = float(metrics["peak_rss_bytes"])
    if metrics["tokens_per_second"] is not None:
        by_step[last][("vilms_train_throughput", labels)] = metrics["tokens_per_second"]
    gate = record.gate.status if record.gate is not None else None
    if gate is not None:
        by_step[last][("vilms_train_gate", labels | {("status", gate)})] = 1.0 if gate in ("passed", "approved") else 0.0
    samples: Samples = []
    held: Series = {}
    for step in sorted(by_step):
        if step in evals:  # a gauge keeps its last value until the next evaluation
            held[("vilms_train_eval_loss", labels)] = evals[step]
            held[("vilms_train_eval_perplexity", labels)] = math.exp(evals[step])
        samples.append((at[step], {**held, **by_step[step]}))
    return samples, run_id


# ---------------------------------------------------------------- drawing

UNIT_SCALE = {"s": (1000.0, "ms"), "bytes": (1 / 2**20, "MiB"), "percentunit": (100.0, "%"), "reqps": (1.0, "req/s")}


def draw(board: dict[str, Any], samples: Samples, out: Path, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    panels = board["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_h = 0.28
    fig = Figure(figsize=(16, rows * unit_h + 0.9), dpi=56)
    height = rows * unit_h + 0.9
    fig.text(0.01, 1 - 0.3 / height, f"{board['title']}  —  drawn by docs/render_dashboards.py from {board['uid']}.json, "
             f"not a Grafana screenshot; data: {note}", fontsize=11, weight="bold", va="top")

    def box(g: dict[str, int]) -> list[float]:
        pad = 0.004
        left, width = g["x"] / 24 + pad, g["w"] / 24 - 2 * pad
        top = 1 - (0.6 + g["y"] * unit_h) / height
        h = g["h"] * unit_h / height
        return [left + 0.04 * width, top - h + 0.1 * h, width * 0.95, h * 0.78]

    for panel in panels:
        g = panel["gridPos"]
        if panel["type"] == "row":
            fig.text(g["x"] / 24 + 0.005, 1 - (0.6 + g["y"] * unit_h + 0.14) / height, panel["title"], fontsize=12,
                     weight="bold", color="#1f3b57")
            continue
        ax = fig.add_axes(box(g))
        ax.set_title(panel["title"], fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        scale, label = UNIT_SCALE.get(unit, (1.0, ""))
        drawn = 0
        stats: list[str] = []
        for target in panel["targets"]:
            for labels, points in sorted(evaluate(target["expr"], samples).items()):
                if not points:
                    continue
                name = legend(target.get("legendFormat", ""), labels)
                if panel["type"] == "stat":
                    stats.append(f"{name}: {points[-1][1] * scale:g}")
                    continue
                xs, ys = zip(*points, strict=True)
                style = "o" if len(points) == 1 else "-"
                ax.plot(xs, [y * scale for y in ys], style, linewidth=1.1, markersize=4, label=name[:40])
                drawn += 1
        if panel["type"] == "stat":
            ax.axis("off")
            ax.text(0.5, 0.5, "\n".join(stats) if stats else "no data", ha="center", va="center", fontsize=13 if stats else 10,
                    color="#2a7" if stats else "#999", transform=ax.transAxes)
            continue
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", color="#999", fontsize=10, transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.set_ylabel(label, fontsize=7)
        ax.set_xlabel("seconds", fontsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left", ncol=2, frameon=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", metadata={"Software": None})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="length of the gateway run")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args(argv)
    boards = {p.stem: json.loads(p.read_text()) for p in sorted(BOARDS.glob("*.json"))}
    gw = gateway_samples(args.seconds)
    print(f"gateway: {len(gw)} scrapes over {gw[-1][0]:.0f} s", file=sys.stderr)
    train, run_id = training_samples()
    print(f"training: run {run_id}, {len(train)} points", file=sys.stderr)
    data = {"gateway": (gw, f"{len(gw)} scrapes of a gateway in front of fake vLLM engines"),
            "training": (train, f"tiny Llama, 40 steps, run {run_id}"),
            "vllm": ([], "none (no vLLM engine on this machine)")}
    for name, board in boards.items():
        samples, note = data[name]
        out = args.out / f"dashboard-{name}.png"
        draw(board, samples, out, note)
        print(f"{out.relative_to(REPO)}: {out.stat().st_size // 1024} KiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
