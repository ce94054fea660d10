"""Argo CD and Flux objects that deploy a helm deployment's chart from git (top-level ``gitops:``).

Per helm deployment: an Argo CD ``Application`` and a Flux ``GitRepository`` + ``HelmRelease``, all
pointing at ``<gitops.path>/generated/<deployment>/helm`` at ``gitops.revision``. The Helm release is
named as `vilms apply` names it (:func:`~vilms.compiler.naming.helm_release_name`) and lives in the same
namespace, so a controller adopts a release `vilms apply` installed, and the other way round.
The chart's own values.yaml is what both controllers use by default: no value files or inline values.
"""

from __future__ import annotations

import re
from typing import Any

from vilms.compiler import layout
from vilms.compiler.facts import gitops as facts
from vilms.compiler.facts.helm import HELM_TIMEOUT
from vilms.compiler.naming import helm_release_name
from vilms.compiler.plan import Deployment, GitOps, Plan

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def target_namespace(dep: Deployment) -> str:
    """The namespace the controllers release ``dep`` into."""
    return dep.namespace or facts.DEFAULT_NAMESPACE


def _labels(plan: Plan, dep: Deployment) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "vilms", "app.kubernetes.io/part-of": plan.project,
            "vilms.dev/deployment": dep.name}


def argocd_application(plan: Plan, dep: Deployment) -> dict[str, Any]:
    """The Argo CD Application: synced automatically, pruning and self-healing (git is the truth; a hand
    edit in the cluster is reverted), failed syncs retried with backoff."""
    g = _gitops(plan)
    argo = g.argocd
    assert argo is not None
    release = helm_release_name(plan.project, dep.name)
    sync: dict[str, Any] = {
        "automated": {"prune": True, "selfHeal": True},
        "retry": {"limit": facts.ARGOCD_SYNC_RETRIES, "backoff": dict(facts.ARGOCD_RETRY_BACKOFF)},
    }
    if dep.namespace:
        sync["syncOptions"] = ["CreateNamespace=true"]
    return {
        "apiVersion": facts.ARGOCD_API_VERSION,
        "kind": "Application",
        "metadata": {"name": release, "namespace": argo.namespace, "labels": _labels(plan, dep)},
        "spec": {
            "project": argo.project,
            "source": {
                "repoURL": g.repository,
                "targetRevision": g.revision,
                "path": layout.chart_in_repository(g.path, dep.name),
                "helm": {"releaseName": release},
            },
            "destination": {"server": argo.server, "namespace": target_namespace(dep)},
            "syncPolicy": sync,
        },
    }


def git_ref(revision: str) -> dict[str, str]:
    """``gitops.revision`` as a Flux GitRepository ref: a 40-hex commit is pinned, a full ref
    (``refs/tags/v1.2.0``) is taken as written, anything else is a branch."""
    if _COMMIT.match(revision):
        return {"commit": revision}
    if revision.startswith("refs/"):
        return {"name": revision}
    return {"branch": revision}


def flux_objects(plan: Plan, dep: Deployment) -> list[dict[str, Any]]:
    """The Flux GitRepository (one per deployment, so removing one deployment never removes another's
    source) and the HelmRelease that installs the chart from it."""
    g = _gitops(plan)
    flux = g.flux
    assert flux is not None
    name = helm_release_name(plan.project, dep.name)
    namespace = target_namespace(dep)
    source: dict[str, Any] = {"url": g.repository, "ref": git_ref(g.revision), "interval": flux.interval}
    if flux.secret:
        source["secretRef"] = {"name": flux.secret}
    remediation = {"retries": facts.FLUX_REMEDIATION_RETRIES}
    repository = {
        "apiVersion": facts.FLUX_SOURCE_API_VERSION,
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": flux.namespace, "labels": _labels(plan, dep)},
        "spec": source,
    }
    release = {
        "apiVersion": facts.FLUX_HELM_API_VERSION,
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": flux.namespace, "labels": _labels(plan, dep)},
        "spec": {
            "interval": flux.interval,
            "releaseName": name,
            "targetNamespace": namespace,
            # Helm keeps the release record where `helm upgrade --install` keeps it: in the target namespace
            "storageNamespace": namespace,
            "timeout": HELM_TIMEOUT,
            "chart": {"spec": {
                "chart": "./" + layout.chart_in_repository(g.path, dep.name),
                # the chart's version never changes: a new git revision is what makes a new chart
                "reconcileStrategy": "Revision",
                "sourceRef": {"kind": "GitRepository", "name": name, "namespace": flux.namespace},
                "interval": flux.interval,
            }},
            "install": {"createNamespace": dep.namespace is not None, "remediation": dict(remediation)},
            "upgrade": {"cleanupOnFail": True, "remediation": {**remediation, "remediateLastFailure": True,
                                                                "strategy": "rollback"}},
        },
    }
    return [repository, release]


def _gitops(plan: Plan) -> GitOps:
    assert plan.gitops is not None, "gitops objects are rendered only for a plan with gitops:"
    return plan.gitops
