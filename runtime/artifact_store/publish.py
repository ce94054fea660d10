"""Make sure a run is in the artifact store before anything serves it from there: what
`vilms export --push`, `vilms rollout` and `vilms rollback` call.

Ray Serve LLM loads an adapter on demand from ``<artifact_store.uri>/<run_id>/``, so a release
on a Ray deployment must find the run there first. A run trained here is pushed (files already
stored are skipped) and then verified by downloading every object and comparing its sha256 with
the local files; a run that is only in the store is verified against its manifest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from vilms.compiler.contracts.training_config import ArtifactStoreSpec
from vilms.compiler.errors import ActionError, UsageError
from vilms.compiler.facts import ray
from vilms.compiler.layout import RUN_ADAPTER, Layout, run_path
from vilms.compiler.plan import Plan

from .client import connect
from .store import ArtifactStore, Pushed

NEEDS_STORE = ("add artifact_store: {uri: s3://<bucket>/<prefix>, endpoint: env:S3_ENDPOINT} to vilms.yaml "
               "(credentials default to env:AWS_ACCESS_KEY_ID and env:AWS_SECRET_ACCESS_KEY)")


@dataclass(frozen=True)
class Published:
    uri: str
    manifest_sha256: str
    files: int
    bytes: int
    pushed: Pushed | None  # None: not here, found in the store and verified against its manifest

    def summary(self) -> str:
        if self.pushed is None:
            did = "already in the store"
        elif not self.pushed.uploaded:
            did = f"already in the store ({self.files} files)"
        else:
            did = f"pushed {len(self.pushed.uploaded)} of {self.files} files"
        return (f"artifact store: {self.uri}/ {did}; verified sha256 of {self.files} files ({self.bytes} bytes); "
                f"manifest sha256 {self.manifest_sha256}")


def ray_deployments(plan: Plan, adapter: str) -> tuple[str, ...]:
    """The Ray deployments that serve ``adapter``: they load it from the artifact store."""
    return tuple(sorted(name for name, dep in plan.deployments.items() if dep.engine == ray.ENGINE
                        and any(adapter in served for served in dep.model_adapters.values())))


def open_store(spec: ArtifactStoreSpec | None, env: Mapping[str, str] | None = None) -> ArtifactStore:
    if spec is None:
        raise UsageError("vilms.yaml has no artifact_store to push to", hint=NEEDS_STORE)
    return ArtifactStore(connect(spec, os.environ if env is None else env))


def publish(store: ArtifactStore, layout: Layout, run_id: str) -> Published:
    """Push ``run_id`` from ``artifacts/<run_id>/adapter/`` when it is here, then verify what is stored."""
    folder = layout.run(run_id) / RUN_ADAPTER
    pushed = None
    if folder.is_dir():
        pushed = store.push(run_id, folder)
        manifest = store.verify(run_id, folder)
    elif store.manifest(run_id) is not None:
        manifest = store.verify(run_id)
    else:
        raise ActionError(f"run {run_id} is neither here ({run_path(run_id, RUN_ADAPTER)}/) nor in the artifact store "
                          f"({store.uri(run_id)}/)",
                          hint=f"push it from where it was trained: `vilms export {run_id} --push`")
    return Published(store.uri(run_id), manifest.sha256, len(manifest.files), manifest.total_bytes, pushed)
