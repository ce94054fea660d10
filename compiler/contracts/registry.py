"""Which files of a build are contract files, and which contract reads each.

Used by tests (every generated contract file loads in its reader) and by tools that look at
a ``generated/`` tree as a whole.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from .approval_log import APPROVAL_LOG
from .build_manifest import BUILD_MANIFEST
from .contract import Contract
from .local_plan import LOCAL_PLAN
from .release_history import RELEASE_HISTORY
from .routes import ROUTES
from .run_record import RUN_RECORD
from .runner_state import RUNNER_STATE
from .training_config import TRAINING_CONFIG

# generated/-relative path patterns → the contract of those files (first match wins; `*`
# also matches "/", so training/*.yaml must come before */local.yaml: an adapter may be named "local")
GENERATED: tuple[tuple[str, Contract[Any]], ...] = (
    ("manifest.json", BUILD_MANIFEST),
    ("*/gateway/routes.yaml", ROUTES),
    ("training/*.yaml", TRAINING_CONFIG),
    ("*/local.yaml", LOCAL_PLAN),
)


def contract_for(relative_path: str) -> Contract[Any] | None:
    """The contract of ``relative_path`` (relative to generated/), or None for other artefacts."""
    for pattern, contract in GENERATED:
        if fnmatchcase(relative_path, pattern):
            return contract
    return None


def all_contracts() -> tuple[Contract[Any], ...]:
    """Every contract ViLMS has (for the schema and dataclass agreement tests)."""
    return (BUILD_MANIFEST, ROUTES, LOCAL_PLAN, TRAINING_CONFIG, RUN_RECORD, RUNNER_STATE, RELEASE_HISTORY, APPROVAL_LOG)
