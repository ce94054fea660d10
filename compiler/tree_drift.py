"""How a folder on disk differs from the files a build writes, compared as git compares.

Git tracks a file's bytes and three modes: 100644 (a regular file), 100755 (executable) and
120000 (a symbolic link, whose content is its target). ``vilms build`` writes every file
100644, so an executable bit, a symbolic link (even to identical content, even dangling), a
folder or a special file where a file goes, and a ``generated/`` that is itself a link or a
file are all drift, named with what differs. Nothing here follows a link or opens anything
but a regular file (a FIFO would block).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

REGULAR = "100644"
EXECUTABLE = "100755"
SYMLINK = "120000"
OTHER = "other"  # a FIFO, socket or device: git cannot hold it


@dataclass(frozen=True)
class Entry:
    """One non-folder below the tree: git's mode and its bytes (a link's target for a link)."""

    mode: str
    data: bytes | None  # None: a regular file that cannot be read, or a special file


@dataclass(frozen=True)
class Drift:
    path: str  # relative to the folder; "" for the folder itself
    state: str  # missing | differs | unexpected | what differs in type or mode


def describe_root(out_dir: Path) -> str | None:
    """What is wrong with ``out_dir`` itself (None: a folder, or nothing there)."""
    try:
        info = os.lstat(out_dir)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return f"a symbolic link (to {os.readlink(out_dir)}), not a folder; vilms build refuses to write through it"
    if not stat.S_ISDIR(info.st_mode):
        return "not a folder; vilms build refuses to replace it"
    return None


def read_entries(out_dir: Path) -> dict[str, Entry]:
    """Every non-folder below ``out_dir`` by lstat, keyed by posix path (empty when ``out_dir``
    is not a real folder). Links are listed, never followed."""
    if describe_root(out_dir) is not None or not out_dir.exists():
        return {}
    found: dict[str, Entry] = {}
    _walk(out_dir, "", found)
    return dict(sorted(found.items()))


def _walk(folder: Path, prefix: str, found: dict[str, Entry]) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        rel = prefix + entry.name
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):
            _walk(Path(entry.path), rel + "/", found)
        elif stat.S_ISLNK(info.st_mode):
            found[rel] = Entry(SYMLINK, os.fsencode(os.readlink(entry.path)))
        elif stat.S_ISREG(info.st_mode):
            mode = EXECUTABLE if info.st_mode & stat.S_IXUSR else REGULAR  # git looks at the owner's x bit
            found[rel] = Entry(mode, _read(Path(entry.path)))
        else:
            found[rel] = Entry(OTHER, None)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:  # unreadable: it differs, and the write replaces it
        return None


def diff_tree(out_dir: Path, files: dict[str, bytes]) -> list[Drift]:
    """How ``out_dir`` differs from ``files`` (empty when up to date), by content, type and mode."""
    root = describe_root(out_dir)
    if root is not None:
        return [Drift("", root)]
    entries = read_entries(out_dir)
    drifts = []
    for rel, data in sorted(files.items()):
        entry = entries.get(rel)
        state = _missing(out_dir / rel) if entry is None else entry_state(entry, data, out_dir / rel)
        if state:
            drifts.append(Drift(rel, state))
    for rel in sorted(set(entries) - set(files)):
        kind = entries[rel].mode
        drifts.append(Drift(rel, "unexpected" if kind == REGULAR else f"unexpected ({_kind(entries[rel])})"))
    return drifts


def _missing(path: Path) -> str:
    return "a folder, not a file" if path.is_dir() and not path.is_symlink() else "missing"


def entry_state(entry: Entry, data: bytes, path: Path | None = None) -> str | None:
    """What differs between ``entry`` and the regular 100644 file of ``data`` (None: nothing)."""
    if entry.mode == SYMLINK:
        target = os.fsdecode(entry.data or b"")
        dangling = path is not None and not path.exists()
        return f"a {'dangling ' if dangling else ''}symbolic link (to {target}), not a regular file (mode 120000, not 100644)"
    if entry.mode == OTHER:
        return "not a regular file (a FIFO, socket or device)"
    differs = entry.data != data
    if entry.mode == EXECUTABLE:
        return ("differs, and " if differs else "") + "executable (mode 100755, not 100644)"
    return "differs" if differs else None


def _kind(entry: Entry) -> str:
    return {SYMLINK: "symbolic link", EXECUTABLE: "executable", OTHER: "not a regular file"}.get(entry.mode, "file")
