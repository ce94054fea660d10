"""Semantic pass: the cluster-serving settings of a Helm deployment in a shape that cannot work — a rolling
update that could never replace a pod, an HPA on a series nothing scrapes, an engine autoscaler whose
default minimum is above its maximum. Target, engine and monitoring of ``serving:``, ``update:`` and
``monitoring:`` are checked with the engines (:mod:`.engines`)."""

from __future__ import annotations

from vilms.compiler.document import Document
from vilms.compiler.reporter import Reporter


def check(doc: Document, report: Reporter) -> None:
    deployments = doc.data.get("deployments", {})
    if "gitops" in doc.data and not any(dep.get("target") == "helm" for dep in deployments.values()):
        report.error(("gitops",), "gitops writes Argo CD and Flux objects for helm deployments, and there is none",
                     at_key=True, hint="add a deployment with target: helm, or remove gitops:")
    for name, dep in doc.data.get("deployments", {}).items():
        base = ("deployments", name)
        _trainjob_name(doc, name, dep, report)
        update = dep.get("update", {})
        if update.get("max_surge", 1) == 0 and update.get("max_unavailable", 0) == 0:
            report.error(base + ("update",), "max_surge and max_unavailable are both 0: a rolling update could never replace a pod",
                         hint="keep the default (max_surge: 1, max_unavailable: 0: one extra pod at a time), or on a cluster "
                              "without a spare GPU set max_surge: 0, max_unavailable: 1 (one replica fewer during an update)")
        if "inflight" in dep.get("autoscale", {}) and "monitoring" not in dep:
            report.error(base + ("autoscale", "inflight"), "scaling the gateway on requests in flight needs monitoring:",
                         hint=f"add monitoring: {{}} to deployment {name!r}: Prometheus then scrapes the gateway, and a "
                              "Prometheus metrics adapter serves the series to the HPA")
        for model, serving in dep.get("serving", {}).items():
            autoscale = serving.get("autoscale")
            if autoscale is None or "min" in autoscale:  # a declared min above max: engines.py
                continue
            replicas = serving.get("replicas", dep.get("replicas", 1))
            if replicas > autoscale["max"]:
                report.error(base + ("serving", model, "autoscale", "max"),
                             f"max {autoscale['max']} is below the model's {replicas} replicas (autoscale.min's default)",
                             hint="raise max, or set min")


def _trainjob_name(doc: Document, name: str, dep: dict, report: Reporter) -> None:
    """A TrainJob's or RayJob's name (``<deployment>-train-<adapter>-<revision>``) must start with a letter (Kubeflow
    Trainer and KubeRay check RFC 1035). The chart renders a RayJob for an adapter of the deployment's hardware with
    training.engine ray, else a TrainJob when it has several GPUs or nodes (compiler.render.helm.training_job)."""
    if dep.get("target") != "helm" or name[:1].isalpha():
        return
    profile = doc.data.get("hardware", {}).get(dep.get("hardware"), {})
    ours = {a: spec for a, spec in doc.data.get("adapters", {}).items() if spec.get("hardware") == dep.get("hardware")}
    on_ray = sorted(a for a, spec in ours.items() if (spec.get("training") or {}).get("engine") == "ray")
    if on_ray:
        report.error(("deployments", name), f"the KubeRay RayJob of adapter {on_ray[0]!r} would be named after this "
                     "deployment, and a RayJob's name must start with a letter", at_key=True,
                     hint=f"rename the deployment so it starts with a letter (e.g. 'k{name}')")
        return
    if profile.get("kind") != "gpu" or (profile.get("gpus", 0) <= 1 and profile.get("nodes", 1) <= 1):
        return
    adapters = sorted(ours)
    if adapters:
        report.error(("deployments", name), f"the Kubeflow TrainJob of adapter {adapters[0]!r} would be named after this "
                     "deployment, and a TrainJob's name must start with a letter", at_key=True,
                     hint=f"rename the deployment so it starts with a letter (e.g. 'k{name}')")
