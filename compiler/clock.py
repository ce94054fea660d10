"""UTC timestamps, in the two forms ViLMS writes: ISO-8601 in records, compact in run ids."""

from __future__ import annotations

from datetime import datetime, timezone

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def utc_now() -> str:
    """``2026-11-30T10:55:39Z``: when something happened, as records keep it."""
    return datetime.now(timezone.utc).strftime(ISO_FORMAT)


def utc_stamp() -> str:
    """``20261130T105539Z``: the time part of a run id."""
    return datetime.now(timezone.utc).strftime(STAMP_FORMAT)
