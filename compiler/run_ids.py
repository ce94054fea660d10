"""Run ids: ``<adapter>-<UTC stamp>-<6 hex>``, e.g. ``support-v1-20261123T152000Z-1a2b3c``.

The one definition used by the trainer (which makes them), the compiler (which checks an
adapter's ``release:``) and rollout; the vilms/v1 schema's ``release`` pattern is the
same expression (a test holds them equal).
"""

from __future__ import annotations

import re
import secrets

from vilms.compiler.clock import utc_stamp

PATTERN = r"^[a-z0-9][a-z0-9._-]{0,80}-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$"
RUN_ID = re.compile(PATTERN)


def new_run_id(adapter: str) -> str:
    """A fresh run id for ``adapter`` (unique with overwhelming odds; the trainer still
    creates its folder exclusively)."""
    return f"{adapter}-{utc_stamp()}-{secrets.token_hex(3)}"


def adapter_of(run_id: str) -> str | None:
    """The adapter a run id names, or None when ``run_id`` is not a run id."""
    return run_id.rsplit("-", 2)[0] if RUN_ID.match(run_id) else None


def example_for(adapter: str) -> str:
    return f"{adapter}-20261123T152000Z-1a2b3c"


EXAMPLE = example_for("support-v1")  # as the schema's and the run record's descriptions spell it
