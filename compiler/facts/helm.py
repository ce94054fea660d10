"""Helm releases of helm deployments, whoever installs them (`vilms apply`, Argo CD, Flux)."""

from __future__ import annotations

HELM_TIMEOUT = "15m"  # how long an install or upgrade may wait for its pods (engines pull large models)
HELM_RELEASE_NAME_MAX = 53  # Helm refuses longer release names (and so does Flux's HelmRelease schema)
