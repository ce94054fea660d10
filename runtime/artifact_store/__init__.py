"""The artifact store: runs' adapters in an S3-compatible bucket, where Ray Serve LLM loads them.

``client`` (boto3, built from vilms.yaml's ``artifact_store`` and the environment), ``manifest``
(a run's files with their sha256), ``store`` (push, verify, fetch), ``publish`` (what the
commands call). boto3 is imported only when a store is opened (the ``store`` extra).
"""

from .client import Connection, Timeouts, connect
from .manifest import Manifest
from .publish import Published, open_store, publish, ray_deployments
from .store import ArtifactStore, Pushed, Transfer

__all__ = ["ArtifactStore", "Connection", "Manifest", "Published", "Pushed", "Timeouts", "Transfer", "connect",
           "open_store", "publish", "ray_deployments"]
