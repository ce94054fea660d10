"""Semantic pass: every name a field refers to exists; no fallback cycles; adapters fit their aliases."""

from __future__ import annotations

from vilms.compiler.document import Document
from vilms.compiler.reporter import Reporter
from vilms.compiler.shorthand import alias_entry, served_aliases
from vilms.compiler.suggest import did_you_mean


def check(doc: Document, report: Reporter) -> None:
    data = doc.data
    models = data.get("models", {})
    datasets = data.get("datasets", {})
    adapters = data.get("adapters", {})
    hardware = data.get("hardware", {})
    aliases = data.get("aliases", {})
    deployments = data.get("deployments", {})

    def ref(path: tuple, name: str, pool: dict, what: str, section: str) -> bool:
        if name in pool:
            return True
        hint = f"define it under {section}:" if not pool else f"known {section}: {', '.join(sorted(pool)[:8])}"
        report.error(path, f"unknown {what} {name!r}{did_you_mean(name, pool)}", hint=hint)
        return False

    for name, adapter in adapters.items():
        base = ("adapters", name)
        ref(base + ("base",), adapter["base"], models, "model", "models")
        ref(base + ("dataset",), adapter["dataset"], datasets, "dataset", "datasets")
        if "hardware" in adapter:
            ref(base + ("hardware",), adapter["hardware"], hardware, "hardware profile", "hardware")
        tracking = adapter.get("tracking", {})
        mlflow = tracking.get("mlflow")
        if isinstance(mlflow, dict) and "experiment" in tracking:
            report.error(base + ("tracking", "experiment"), "the experiment is given twice: here and in tracking.mlflow",
                         hint="with a tracking server, write it once, as tracking.mlflow.experiment")
        elif not mlflow and "experiment" in tracking:
            report.error(base + ("tracking", "experiment"), "an experiment without MLflow tracking",
                         hint="set tracking.mlflow: true (or a server), or remove the experiment")

    for name, raw in aliases.items():
        entry = alias_entry(raw)
        base = ("aliases", name)
        model_path = base + (("model",) if isinstance(raw, dict) else ())
        model_ok = ref(model_path, entry["model"], models, "model", "models")
        adapter = entry.get("adapter")
        if adapter is not None and ref(base + ("adapter",), adapter, adapters, "adapter", "adapters") and model_ok:
            adapter_base = adapters[adapter]["base"]
            if adapter_base in models and adapter_base != entry["model"]:
                report.error(
                    base + ("adapter",),
                    f"adapter {adapter!r} was trained on model {adapter_base!r}, but this alias serves {entry['model']!r}",
                    hint=f"set model: {adapter_base} or pick an adapter trained on {entry['model']}",
                )
        for i, fallback in enumerate(entry.get("fallbacks", [])):
            if fallback == name:
                report.error(base + ("fallbacks", i), "an alias cannot fall back to itself")
            else:
                ref(base + ("fallbacks", i), fallback, aliases, "alias", "aliases")

    _check_cycles(aliases, report)

    for name, spec in data.get("gateway", {}).get("keys", {}).items():
        for i, alias in enumerate(spec.get("aliases", [])):
            ref(("gateway", "keys", name, "aliases", i), alias, aliases, "alias", "aliases")

    for name, dep in deployments.items():
        base = ("deployments", name)
        ref(base + ("hardware",), dep["hardware"], hardware, "hardware profile", "hardware")
        listed = dep.get("aliases")
        for i, alias in enumerate(listed or []):
            ref(base + ("aliases", i), alias, aliases, "alias", "aliases")
        if listed is not None and not listed:
            report.error(base + ("aliases",), "a deployment must serve at least one alias", hint="list aliases, or remove the key to serve them all")
        served = set(served_aliases(data, dep))
        for alias in sorted(served & set(aliases)):
            for fallback in alias_entry(aliases[alias]).get("fallbacks", []):
                if fallback in aliases and fallback not in served:
                    where = base + ("aliases", listed.index(alias)) if listed else base
                    report.error(
                        where,
                        f"alias {alias!r} falls back to {fallback!r}, which this deployment does not serve",
                        hint=f"add {fallback!r} to deployments.{name}.aliases",
                    )
        if not aliases:
            report.error(base, "nothing to serve: define aliases: first")


def _check_cycles(aliases: dict, report: Reporter) -> None:
    """Report each fallback cycle once, at the alias that starts it (sorted order).

    Depth-first, with an explicit stack: a chain of thousands of fallbacks is no deeper
    for Python than a chain of two."""
    graph = {name: [f for f in alias_entry(raw).get("fallbacks", []) if f in aliases and f != name] for name, raw in aliases.items()}
    seen_cycles: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    for root in sorted(graph):
        if root in state:
            continue
        path, pending = [root], [iter(graph[root])]
        state[root] = 1
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                pending.pop()
            elif state.get(nxt) == 1:
                cycle = path[path.index(nxt):]
                if frozenset(cycle) not in seen_cycles:
                    seen_cycles.add(frozenset(cycle))
                    _report_cycle(aliases, cycle, report)
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                pending.append(iter(graph[nxt]))


def _report_cycle(aliases: dict, cycle: list[str], report: Reporter) -> None:
    start = min(cycle)
    i = cycle.index(start)
    ordered = cycle[i:] + cycle[:i] + [start]
    idx = alias_entry(aliases[start])["fallbacks"].index(ordered[1])
    shown = ordered if len(ordered) <= 8 else [*ordered[:3], "…", *ordered[-2:]]
    size = f" ({len(cycle):,} aliases)" if len(ordered) > 8 else ""
    report.error(
        ("aliases", start, "fallbacks", idx),
        f"fallback cycle: {' → '.join(shown)}{size}",
        hint="fallbacks must end at an alias without fallbacks",
    )
