"""The MLflow Model Registry follows `vilms rollout` and `vilms rollback`.

``client`` (MLflow's client of one adapter's registered model: find or register a run's
version, move the alias; every call bounded, the URI never shown), ``release`` (when the
commands call it and what they say). mlflow is imported lazily (the ``track`` extra).
"""

from .client import Pointed, Registry, SettingError, Version, open_registry, release_tags, tracking_uri, where
from .release import FollowRelease

__all__ = ["FollowRelease", "Pointed", "Registry", "SettingError", "Version", "open_registry", "release_tags",
           "tracking_uri", "where"]
