"""``.vilms/releases/<adapter>.jsonl`` (kind ReleaseHistoryEntry): one release change per line.

Written by `vilms rollout` / `vilms rollback` (:mod:`vilms.compiler.rollout.history`), one
JSON object per line, and read back by rollback, which replays the lines as a stack. Each
line is a whole contract document (apiVersion, kind, then the entry); the reader parses
each line on its own and reports problems as ``.vilms/releases/<adapter>.jsonl:LINE:COL``.
"""

from __future__ import annotations

from dataclasses import field

from vilms.compiler.record import record
from vilms.compiler.reporter import Reporter
from vilms.compiler.run_ids import adapter_of

from .codec import KEY
from .contract import Contract


@record
class ReleaseDigest:
    adapter_sha256: str | None  # sha256 of artifacts/<run>/adapter/adapter_model.safetensors
    gguf_sha256: str | None  # sha256 of artifacts/<run>/gguf/adapter.gguf, where exported


@record
class ReleaseHistoryEntry:
    at: str  # UTC, ISO-8601 (vilms.compiler.clock.utc_now)
    adapter: str
    from_: str | None = field(metadata={KEY: "from"})  # the release before: what vilms.yaml held (null: unreleased)
    to: str | None  # the release after: a run id of the adapter, or null
    action: str  # rollout | rollback
    # what `to` was, byte for byte, where the run is in artifacts/ here (null: not here, or to is null);
    # lines written before it existed are read with digest null
    digest: ReleaseDigest | None


def _check(entry: ReleaseHistoryEntry, report: Reporter) -> None:
    if entry.from_ == entry.to:
        report.error(("to",), f"equals from ({entry.to!r}); a history line records a change")
    if entry.to is not None and adapter_of(entry.to) != entry.adapter:
        report.error(("to",), f"run {entry.to!r} is not a run of adapter {entry.adapter!r}")


RELEASE_HISTORY = Contract(
    kind="ReleaseHistoryEntry",
    root=ReleaseHistoryEntry,
    schema_file="release-history-entry.schema.json",
    format="json",
    remedy="restore it from git or remove the bad line (`vilms rollout` and `vilms rollback` write every line)",
    check=_check,
)
