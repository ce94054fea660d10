"""`vilms diff`: what `vilms build` would change in ``generated/``, without writing anything.

The new side is always a fresh in-memory compile of vilms.yaml. The old side is
``generated/`` on disk, or ``generated/`` as committed at a git ref (``--against REF``,
read with ``git ls-tree`` and ``git cat-file`` from the repository holding vilms.yaml).
A comparison is a tuple of :class:`FileChange`, ordered by path with ``manifest.json``
last and summarised, so the manifest's hash lines never drown the review. It renders as
unified diffs (text), a pull-request comment (markdown) or JSON. Only ``generated/`` is
compared, and ``generated/`` never holds secrets (they are ``env:`` references).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler.contracts.build_manifest import BUILD_MANIFEST
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.compiler.layout import GENERATED, MANIFEST
from vilms.compiler.pipeline import compile_files
from vilms.compiler.tree_drift import REGULAR, SYMLINK, describe_root, read_entries

DEFAULT_MAX_LINES = 200  # diff lines shown per file; 0 shows everything
CONTEXT_LINES = 3
# `--format markdown` stays below this many characters (GitHub refuses comments over 65,536)
DEFAULT_MAX_CHARS = 60_000
MIN_MAX_CHARS = 1_000
MARKER_PREFIX = "<!-- vilms-diff"  # the first line of every markdown comment: `<!-- vilms-diff project=NAME -->`


@dataclass(frozen=True)
class FileChange:
    """One file of ``generated/`` that a build would add, remove or modify."""

    path: str  # relative to generated/
    status: str  # added | removed | modified
    lines: tuple[str, ...]  # unified diff hunks (no ---/+++ header), or a summary for manifest.json
    additions: int
    deletions: int
    summarised: bool = False  # lines are a summary, not a diff

    @property
    def shown_path(self) -> str:
        return f"{GENERATED}/{self.path}"


@dataclass(frozen=True)
class DiffReport:
    changes: tuple[FileChange, ...]
    files: int  # how many files the build produces
    against: str | None = None  # the git ref compared with; None: generated/ on disk
    project: str = ""  # the project's name (in the markdown marker)

    def count(self, status: str) -> int:
        return sum(1 for c in self.changes if c.status == status)

    @property
    def unchanged(self) -> int:
        return self.files - self.count("modified") - self.count("added")


# --- the two sides


def read_disk_tree(out_dir: Path) -> dict[str, bytes]:
    """Every file below ``out_dir`` (empty when it does not exist)."""
    if not out_dir.is_dir():
        return {}
    return {p.relative_to(out_dir).as_posix(): p.read_bytes() for p in sorted(out_dir.rglob("*")) if p.is_file()}


def read_git_tree(project_root: Path, ref: str, folder: str = GENERATED) -> dict[str, bytes]:
    """Every file below ``project_root/folder`` as committed at ``ref`` (empty if it was not there)."""
    return read_git_entries(project_root, ref, folder)[0]


def read_git_entries(project_root: Path, ref: str, folder: str = GENERATED) -> tuple[dict[str, bytes], dict[str, str]]:
    """Every file below ``project_root/folder`` as committed at ``ref``, and git's mode of each."""
    if not ref or ref.startswith("-"):
        raise ActionError(f"invalid git ref {ref!r}", hint="pass a branch, tag or commit, e.g. --against main")
    top = Path(_git(project_root, "rev-parse", "--show-toplevel", what=ref).decode().strip())
    prefix = _git(project_root, "rev-parse", "--show-prefix", what=ref).decode().strip()
    proc = _run_git(project_root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if proc.returncode != 0:
        raise ActionError(f"unknown git ref {ref!r} in {top}", hint=_unknown_ref_hint(top, ref))
    commit = proc.stdout.decode().strip()
    base = f"{prefix}{folder}/"
    listing = _git(top, "ls-tree", "-r", "-z", commit, "--", base, what=ref)
    entries = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, _, name = record.partition(b"\t")
        mode, kind, oid = meta.decode().split()
        path = name.decode("utf-8", errors="surrogateescape")
        if kind == "blob" and path.startswith(base):
            entries.append((path[len(base):], mode, oid))
    if not entries:
        return {}, {}
    blobs = _cat_blobs(top, [oid for _, _, oid in entries])
    return {rel: blobs[oid] for rel, _, oid in entries}, {rel: mode for rel, mode, _ in entries}


def _unknown_ref_hint(top: Path, ref: str) -> str:
    """Say how to fetch ``ref``: CI checkouts are shallow and hold one branch."""
    shallow = _run_git(top, "rev-parse", "--is-shallow-repository").stdout.decode().strip() == "true"
    fetch = f"git fetch --depth=50 origin {ref}" if shallow else f"git fetch origin {ref}"
    where = "this clone is shallow: " if shallow else "if it is a remote branch, fetch it: "
    return (f"{where}`{fetch}` (in GitHub Actions: actions/checkout with `fetch-depth: 0`), "
            "or pass a branch, tag or commit that exists here (git branch -a, git log --oneline)")


def _cat_blobs(cwd: Path, oids: list[str]) -> dict[str, bytes]:
    out = _git(cwd, "cat-file", "--batch", stdin="".join(f"{oid}\n" for oid in oids).encode(), what="blobs")
    blobs: dict[str, bytes] = {}
    pos = 0
    while pos < len(out):
        end = out.index(b"\n", pos)
        oid, kind, size = out[pos:end].decode().split()
        if kind != "blob":
            raise ActionError(f"git cat-file returned a {kind} for {oid}")
        start = end + 1
        blobs[oid] = out[start:start + int(size)]
        pos = start + int(size) + 1
    return blobs


def _run_git(cwd: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, env=env, check=False)
    except FileNotFoundError:
        raise ActionError("git is not installed (or not on PATH)",
                          hint="--against reads generated/ from git; install git, or drop --against to compare with generated/ on disk") from None


def _git(cwd: Path, *args: str, what: str, stdin: bytes | None = None) -> bytes:
    proc = _run_git(cwd, *args, stdin=stdin)
    if proc.returncode == 0:
        return proc.stdout
    message = proc.stderr.decode(errors="replace").strip()
    if "not a git repository" in message:
        raise ActionError(f"{cwd} is not inside a git repository",
                          hint="--against compares with generated/ as committed at a git ref; drop it to compare with generated/ on disk")
    raise ActionError(f"git {args[0]} failed for {what!r}: {message.splitlines()[-1] if message else f'exit {proc.returncode}'}")


# --- comparing


def compare(old: Mapping[str, bytes], new: Mapping[str, bytes], *, against: str | None = None,
            old_modes: Mapping[str, str] | None = None, project: str = "") -> DiffReport:
    """How ``new`` (what a build writes, every file mode 100644) differs from ``old`` (what is
    there now, with git's mode of each file in ``old_modes``; missing: 100644)."""
    modes = old_modes or {}
    changes = []
    for rel in sorted(set(old) | set(new), key=lambda p: (p == MANIFEST, p)):
        before, after = old.get(rel), new.get(rel)
        mode = modes.get(rel, REGULAR)
        if before == after and mode == REGULAR:
            continue
        status = "added" if before is None else "removed" if after is None else "modified"
        if status == "modified" and mode != REGULAR:
            changes.append(_mode_change(rel, mode, before, after))
        else:
            changes.append(_change(rel, status, before, after))
    return DiffReport(changes=tuple(changes), files=len(new), against=against, project=project)


def _mode_change(rel: str, mode: str, before: bytes, after: bytes) -> FileChange:
    """A file whose type or mode differs from the regular 100644 file a build writes."""
    if mode == SYMLINK:
        target = before.decode("utf-8", errors="replace")
        return FileChange(rel, "modified", (f"symbolic link (to {target}) → regular file (mode 120000 → 100644)",),
                          0, 0, summarised=True)
    note = f"old mode {mode}", f"new mode {REGULAR}"
    if before == after:
        return FileChange(rel, "modified", (f"mode {mode} → {REGULAR}",), 0, 0, summarised=True)
    change = _change(rel, "modified", before, after)
    return FileChange(rel, "modified", (*note, *change.lines), change.additions, change.deletions, change.summarised)


def _change(rel: str, status: str, before: bytes | None, after: bytes | None) -> FileChange:
    old_text, new_text = _text(before), _text(after)
    if old_text is None or new_text is None:
        return FileChange(rel, status, ("binary file differs",), 0, 0, summarised=True)
    hunks = _unified(old_text, new_text)
    additions = sum(1 for line in hunks if line.startswith("+"))
    deletions = sum(1 for line in hunks if line.startswith("-"))
    if rel == MANIFEST:
        summary = _manifest_summary(before, after)
        if summary is not None:
            return FileChange(rel, status, summary, additions, deletions, summarised=True)
    if not hunks:  # an empty file added or removed, or only a line ending that splitting cannot see
        return FileChange(rel, status, ("empty file" if status != "modified" else "line endings differ",), 0, 0,
                          summarised=True)
    return FileChange(rel, status, tuple(hunks), additions, deletions)


def _text(data: bytes | None) -> str | None:
    if data is None:
        return ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _unified(old: str, new: str) -> list[str]:
    out = []
    for line in list(difflib.unified_diff(_lines(old), _lines(new), n=CONTEXT_LINES))[2:]:  # drop ---/+++
        if line.endswith("\n"):
            out.append(line[:-1])
        else:
            out.extend((line, "\\ No newline at end of file"))
    return out


def _manifest_summary(before: bytes | None, after: bytes | None) -> tuple[str, ...] | None:
    """One line per kind of change; None (show the plain diff) unless both sides are manifests of
    this ViLMS version (a ref from before a contract change shows its whole diff)."""
    try:
        old = BUILD_MANIFEST.parse(before, "old manifest.json") if before is not None else None
        new = BUILD_MANIFEST.parse(after, "new manifest.json") if after is not None else None
    except InvalidInputError:
        return None
    if new is None:
        return ("manifest removed",)
    lines = []
    if old is None or old.input.sha256 != new.input.sha256:
        lines.append(f"input sha256: {_short(old.input.sha256 if old else None)} → {_short(new.input.sha256)}")
    if old is not None and old.vilms_version != new.vilms_version:
        lines.append(f"vilms_version: {old.vilms_version} → {new.vilms_version}")
    old_files = old.files if old is not None else {}
    hashed = sum(1 for p in set(old_files) & set(new.files) if old_files[p] != new.files[p])
    lines.append(f"file hashes: {hashed} changed, {len(set(new.files) - set(old_files))} added, "
                 f"{len(set(old_files) - set(new.files))} removed ({len(new.files)} files listed)")
    return tuple(lines)


def _short(digest: object) -> str:
    return str(digest)[:12] if digest else "none"


# --- rendering


def summary_line(report: DiffReport) -> str:
    if not report.changes:
        where = f"generated/ at {report.against}" if report.against else "generated/"
        return f"no changes: {where} matches what vilms.yaml compiles to ({report.files} files)"
    modified = report.count("modified")
    return (f"{modified} file{'' if modified == 1 else 's'} changed, "
            f"{report.count('added')} added, {report.count('removed')} removed")


def _shown_lines(change: FileChange, max_lines: int) -> tuple[tuple[str, ...], int]:
    """The lines to show and how many were left out."""
    if max_lines <= 0 or change.summarised or len(change.lines) <= max_lines:
        return change.lines, 0
    return change.lines[:max_lines], len(change.lines) - max_lines


def _omitted_note(omitted: int) -> str:
    return f"... {omitted} more diff line{'s' if omitted != 1 else ''} not shown (raise --max-lines, or 0 for all)"


def render_text(report: DiffReport, *, max_lines: int = DEFAULT_MAX_LINES) -> str:
    out = []
    for change in report.changes:
        old = "/dev/null" if change.status == "added" else f"a/{change.shown_path}"
        new = "/dev/null" if change.status == "removed" else f"b/{change.shown_path}"
        if change.summarised:
            out.append(f"{change.shown_path} ({change.status}, summarised):")
            out.extend(f"  {line}" for line in change.lines)
            continue
        out.extend((f"--- {old}", f"+++ {new}"))
        lines, omitted = _shown_lines(change, max_lines)
        out.extend(lines)
        if omitted:
            out.append(_omitted_note(omitted))
    out.append(summary_line(report))
    return "\n".join(out) + "\n"


def render_stat(report: DiffReport) -> str:
    """One line per file and the summary line (for `vilms rollout`)."""
    out = [f"  {c.status:<8}  {c.shown_path}  ({_counts(c)})" for c in report.changes]
    out.append(summary_line(report))
    return "\n".join(out)


def _counts(change: FileChange) -> str:
    return "summarised" if change.summarised else f"+{change.additions} -{change.deletions}"


def marker(project: str) -> str:
    """The hidden first line of every markdown comment, by which CI finds its earlier comment."""
    name = re.sub(r"[^A-Za-z0-9._-]", "", project)[:100]
    return f"{MARKER_PREFIX} project={name} -->" if name else f"{MARKER_PREFIX} -->"


def render_markdown(report: DiffReport, *, max_lines: int = DEFAULT_MAX_LINES, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """A pull-request comment of at most ``max_chars`` characters: the marker, a heading, the
    per-file table, then each file's diff while they fit (whole blocks only, so no code fence
    is ever cut); when the table alone is too long, the counts only."""
    max_chars = max(max_chars, MIN_MAX_CHARS)
    against = f" against `{_clip(report.against, 200)}`" if report.against else ""
    head = [marker(report.project), f"### `vilms diff`{against}: {summary_line(report)}", ""]
    if not report.changes:
        return "\n".join(head) + "\n"
    table = ["| file | change | lines |", "|---|---|---|"]
    table += [f"| `{_cell(c.shown_path)}` | {c.status} | {_counts(c)} |" for c in report.changes]
    text = "\n".join(head + table) + "\n"
    note_room = 200
    if len(text) + note_room > max_chars:
        return _count_only(head, report, max_chars)
    shown = 0
    for change in report.changes:
        block = "\n".join(_details(change, max_lines)) + "\n"
        if len(text) + len(block) + note_room > max_chars:
            break
        text += block
        shown += 1
    left = len(report.changes) - shown
    if left:
        text += (f"\n_{left} of {len(report.changes)} file diffs left out to keep this comment under "
                 f"{max_chars:,} characters; run `vilms diff` to see them._\n")
    return text


def _details(change: FileChange, max_lines: int) -> list[str]:
    out = ["", "<details>", f"<summary><code>{_html(change.shown_path)}</code>: {change.status} ({_counts(change)})</summary>", ""]
    if change.summarised:
        out += [f"- {_html(line)}" for line in change.lines]
    else:
        lines, omitted = _shown_lines(change, max_lines)
        fence = "`" * max(3, _longest_backtick_run(lines) + 1)
        out += [f"{fence}diff", *lines, fence]
        if omitted:
            out += ["", f"_{_omitted_note(omitted)}_"]
    out += ["", "</details>"]
    return out


def _count_only(head: list[str], report: DiffReport, max_chars: int) -> str:
    note = (f"_{len(report.changes)} files differ; the per-file table alone is over {max_chars:,} characters. "
            "Run `vilms diff` to see them._")
    return ("\n".join([*head, note]) + "\n")[:max_chars]


def _clip(text: str, limit: int) -> str:
    text = text.replace("`", "'")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _longest_backtick_run(lines: tuple[str, ...]) -> int:
    return max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_json(report: DiffReport, *, max_lines: int = DEFAULT_MAX_LINES) -> str:
    changed = []
    for change in report.changes:
        lines, omitted = _shown_lines(change, max_lines)
        changed.append({
            "path": change.shown_path,
            "status": change.status,
            "additions": change.additions,
            "deletions": change.deletions,
            "summarised": change.summarised,
            "diff": "\n".join(lines) + ("\n" if lines else ""),
            "omitted_lines": omitted,
        })
    summary = {
        "files": report.files,
        "modified": report.count("modified"),
        "added": report.count("added"),
        "removed": report.count("removed"),
        "unchanged": report.unchanged,
    }
    return json.dumps({"against": report.against, "changed": changed, "summary": summary}, indent=2, sort_keys=True) + "\n"


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}


def diff_project(file: Path, *, against: str | None = None) -> DiffReport:
    """Compile ``file`` in memory and compare with ``generated/`` beside it (or at git ``against``),
    by content, type and mode as git compares (what `vilms build --check` holds it to)."""
    doc, plan, files = compile_files(file)
    if against is not None:
        old, modes = read_git_entries(doc.root, against)
        return compare(old, files, against=against, old_modes=modes, project=plan.project)
    out_dir = doc.root / GENERATED
    entries = read_entries(out_dir)
    old = {rel: entry.data if entry.data is not None else b"" for rel, entry in entries.items()}
    report = compare(old, files, old_modes={rel: entry.mode for rel, entry in entries.items()}, project=plan.project)
    root = describe_root(out_dir)
    if root is None:
        return report
    folder = FileChange("", "modified", (f"{GENERATED}/ is {root}",), 0, 0, summarised=True)
    return DiffReport(changes=(folder, *report.changes), files=report.files, project=plan.project)
