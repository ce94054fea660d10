"""`vilms rollout` / `vilms rollback`: the `release:` edit, the release history, the change."""

from .edit import set_release
from .history import rollback_target
from .release import ReleaseChange, describe, rollback, rollout

__all__ = ["ReleaseChange", "describe", "rollback", "rollback_target", "rollout", "set_release"]
