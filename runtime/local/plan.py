"""What the runner derives from its input, ``generated/<deployment>/local.yaml``.

The file is read only through its contract (:data:`~vilms.compiler.contracts.local_plan.LOCAL_PLAN`):
strictly validated, every problem located. This module adds what the runner needs beside it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vilms.compiler.contracts.local_plan import LOCAL_PLAN, LocalPlan
from vilms.compiler.layout import Layout


def plan_sha256(plan: LocalPlan) -> str:
    """Identifies a build of the plan: the sha256 of its canonical form (the file's bytes
    without comments). A running deployment records it, so `vilms up` tells a newer build."""
    return hashlib.sha256(LOCAL_PLAN.dump(plan)).hexdigest()


def routes_file(layout: Layout, plan: LocalPlan) -> Path:
    """The routes.yaml the plan's gateway serves."""
    return layout.in_generated(plan.gateway.routes)


def routes_sha256(data: bytes) -> str:
    """Identifies the routes a gateway serves: the sha256 of the file's bytes. A running
    deployment records it, so `vilms up` applies a build that changed only the routes."""
    return hashlib.sha256(data).hexdigest()


def built_sha256(layout: Layout, plan: LocalPlan) -> tuple[str, str | None]:
    """What a supervisor records of the build it runs (the plan's sha256 and its routes'), for
    the build now in generated/; the routes' is None when the file cannot be read."""
    try:
        routes = routes_file(layout, plan).read_bytes()
    except OSError:
        return plan_sha256(plan), None
    return plan_sha256(plan), routes_sha256(routes)
