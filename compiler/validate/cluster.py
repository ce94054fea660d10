"""Semantic pass: the cluster-serving settings of a deployment (rolling update, engine autoscaling,
monitoring) are used where the Helm chart can honour them, and never in a shape that cannot work."""

from __future__ import annotations

from vilms.compiler.document import Document
from vilms.compiler.reporter import Reporter

HELM_ONLY = ("update", "monitoring")


def check(doc: Document, report: Reporter) -> None:
    for name, dep in doc.data.get("deployments", {}).items():
        base = ("deployments", name)
        helm = dep["target"] == "helm"
        for key in HELM_ONLY:
            if key in dep and not helm:
                report.error(base + (key,), f"{key} applies to target helm only", at_key=True)
        update = dep.get("update", {})
        if update.get("max_surge", 1) == 0 and update.get("max_unavailable", 0) == 0:
            report.error(base + ("update",), "max_surge and max_unavailable are both 0: a rolling update could never replace a pod",
                         hint="keep the default (max_surge: 1, max_unavailable: 0: one extra pod at a time), or on a cluster "
                              "without a spare GPU set max_surge: 0, max_unavailable: 1 (one replica fewer during an update)")
        monitored = "monitoring" in dep
        if "inflight" in dep.get("autoscale", {}) and not monitored:
            report.error(base + ("autoscale", "inflight"), "scaling the gateway on requests in flight needs monitoring:",
                         hint=f"add monitoring: {{}} to deployment {name!r}: Prometheus then scrapes the gateway, and a "
                              "Prometheus metrics adapter serves the series to the HPA")
        for model, serving in dep.get("serving", {}).items():
            autoscale = serving.get("autoscale")
            if autoscale is None:
                continue
            where = base + ("serving", model, "autoscale")
            if not helm:
                report.error(where, f"engine autoscaling (KEDA) applies to target helm only, not {dep['target']!r}", at_key=True,
                             hint="set serving.<model>.replicas for a fixed number of engines")
            elif not monitored:
                report.error(where, "engine autoscaling needs monitoring: KEDA reads vLLM's queue and KV-cache use from Prometheus",
                             at_key=True, hint=f"add monitoring: {{}} to deployment {name!r} (or monitoring: {{prometheus_url: ...}})")
            if "min" in autoscale and autoscale["min"] > autoscale["max"]:
                report.error(where + ("min",), f"min {autoscale['min']} is greater than max {autoscale['max']}")
            elif "min" not in autoscale and (replicas := serving.get("replicas", dep.get("replicas", 1))) > autoscale["max"]:
                report.error(where + ("max",), f"max {autoscale['max']} is below the model's {replicas} replicas (autoscale.min's default)",
                             hint="raise max, or set min")
