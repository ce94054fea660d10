"""The project's ``.gitignore`` and ``.gitattributes``, written by ``vilms init`` and the demo.

``.gitignore`` names everything vilms may leave beside vilms.yaml that is not committed: the
temp files and folders of a command that was killed (``.generated.new-*``, ``.generated.old-*``,
``.vilms.yaml.*.tmp``; the next command that writes removes them), the lock and the journal,
the runner's state and ``artifacts/``. ``.gitattributes`` merges the append-only JSONL logs
(release history, approvals) with ``merge=union``: two branches that each released keep both
lines (docs/releases.md, "Merging"). Existing files get the missing lines appended, once.
"""

from __future__ import annotations

from pathlib import Path

from vilms.compiler.errors import ActionError
from vilms.compiler.layout import APPROVALS, ARTIFACTS, GENERATED, JOURNAL, PROJECT_LOCK, RELEASES, RUN_LOCKS, RUNNER

IGNORED = (
    f"/{ARTIFACTS}/",
    f"/.{GENERATED}.new-*/",
    f"/.{GENERATED}.old-*/",
    "/.*.yaml.tmp",
    "/.*.yaml.*.tmp",
    "/.*.yml.*.tmp",
    f"/{PROJECT_LOCK}",
    f"/{JOURNAL}",
    f"/{JOURNAL}.*.tmp",
    f"/{RUNNER}/",
    f"/{RUN_LOCKS}/",
)
ATTRIBUTES = (
    f"/{RELEASES}/*.jsonl merge=union",
    f"/{APPROVALS}/*.jsonl merge=union",
)
HEADER = "# vilms (`vilms init`): "


def write_git_files(root: Path) -> list[Path]:
    """Add what is missing to ``root``/.gitignore and .gitattributes; the files changed."""
    changed = []
    for name, lines, why in ((".gitignore", IGNORED, "local state and what a killed command leaves; never committed"),
                             (".gitattributes", ATTRIBUTES, "append-only logs: a merge keeps the lines of both sides")):
        path = root / name
        if _append_missing(path, lines, HEADER + why):
            changed.append(path)
    return changed


def _append_missing(path: Path, lines: tuple[str, ...], header: str) -> bool:
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        have = {line.strip() for line in text.splitlines()}
        missing = [line for line in lines if line not in have]
        if not missing:
            return False
        lead = "\n" if text and not text.endswith("\n") else ""
        block = ([header] if header not in have else []) + missing
        with path.open("a", encoding="utf-8") as fh:
            fh.write(lead + "".join(f"{line}\n" for line in block))
    except (OSError, UnicodeDecodeError) as exc:
        raise ActionError(f"cannot update {path}: {getattr(exc, 'strerror', None) or exc}",
                          hint=f"add these lines to {path.name} by hand: {', '.join(lines)}") from None
    return True
