"""Argo CD and Flux (top-level ``gitops:``): defaults of the objects `vilms build` writes."""

from __future__ import annotations

ARGOCD_NAMESPACE = "argocd"  # where Argo CD runs and its Applications live
ARGOCD_PROJECT = "default"
ARGOCD_IN_CLUSTER = "https://kubernetes.default.svc"  # Argo CD's name for the cluster it runs in
ARGOCD_API_VERSION = "argoproj.io/v1alpha1"
ARGOCD_SYNC_RETRIES = 5  # a failed sync is retried this often, backing off from 30s to 10m
ARGOCD_RETRY_BACKOFF = {"duration": "30s", "factor": 2, "maxDuration": "10m"}

FLUX_NAMESPACE = "flux-system"
FLUX_INTERVAL = "5m"
FLUX_INTERVAL_MIN_S = 10  # shorter polls hammer the git host for nothing
FLUX_INTERVAL_MAX_S = 24 * 3600  # longer, and a release waits a day for the controller to notice it
FLUX_SOURCE_API_VERSION = "source.toolkit.fluxcd.io/v1"
FLUX_HELM_API_VERSION = "helm.toolkit.fluxcd.io/v2"
FLUX_REMEDIATION_RETRIES = 3  # a failed install or upgrade is retried (upgrades roll back first) this often

# a helm deployment without ``namespace:`` is released into this one by the controllers (`vilms apply` uses the
# kube context's namespace, which is this one unless the context names another)
DEFAULT_NAMESPACE = "default"
