"""Argo CD and Flux (top-level ``gitops:``): defaults of the objects `vilms build` writes."""

from __future__ import annotations

ARGOCD_NAMESPACE = "argocd"  # where Argo CD runs and its Applications live
ARGOCD_PROJECT = "default"
ARGOCD_IN_CLUSTER = "https://kubernetes.default.svc"  # Argo CD's name for the cluster it runs in
FLUX_NAMESPACE = "flux-system"
FLUX_INTERVAL = "5m"
