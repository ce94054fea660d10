"""A run's manifest in the artifact store: every file of its adapter folder with its sha256 and
size, and the run id. Written last by a push, so a run whose manifest is missing is not in the
store; read back strictly, because the store is not ours to trust (names cannot leave the run's
folder, digests are 64 hex digits)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler.digest import sha256_file
from vilms.compiler.errors import ActionError
from vilms.compiler.facts.store import MANIFEST, MANIFEST_FORMAT

SHA256 = re.compile(r"^[0-9a-f]{64}$")
NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}$")  # no leading dot: no '..', no hidden files
MAX_DEPTH = 4


@dataclass(frozen=True)
class Entry:
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    run_id: str
    files: dict[str, Entry]  # by name relative to the run's folder, POSIX

    def dumps(self) -> bytes:
        """Canonical bytes (sorted keys, no timestamps): the same run always has the same digest."""
        data = {"format": MANIFEST_FORMAT, "run_id": self.run_id,
                "files": {name: {"sha256": e.sha256, "size": e.size} for name, e in sorted(self.files.items())}}
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.dumps()).hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.files.values())


def safe_name(name: str) -> bool:
    """A file name that stays inside the run's folder, here and in the bucket: relative, POSIX,
    no '.' or '..' parts, no hidden files, a few levels at most, and not the manifest itself."""
    parts = name.split("/")
    return (0 < len(parts) <= MAX_DEPTH and all(NAME_PART.match(p) for p in parts) and name != MANIFEST)


def scan(folder: Path, run_id: str) -> Manifest:
    """The manifest of a local adapter folder (every regular file below it, hashed)."""
    if not folder.is_dir():
        raise ActionError(f"{folder} does not exist: no adapter to push",
                          hint="push a completed run (artifacts/<run_id>/adapter/ is written when training completes)")
    files: dict[str, Entry] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            continue
        name = path.relative_to(folder).as_posix()
        if path.is_symlink() or not path.is_file():
            raise ActionError(f"{path} is not a regular file; the adapter folder must hold only files")
        if not safe_name(name):
            raise ActionError(f"{path}: {name!r} cannot be stored (names are letters, digits and ._+-, "
                              f"not starting with a dot, at most {MAX_DEPTH} levels, not {MANIFEST})")
        files[name] = Entry(sha256_file(path), path.stat().st_size)
    if not files:
        raise ActionError(f"{folder} is empty: no adapter to push")
    return Manifest(run_id, files)


def parse(raw: bytes, run_id: str, where: str) -> Manifest:
    """The manifest stored at ``where`` (its URI, for messages), checked field by field."""
    def bad(why: str) -> ActionError:
        return ActionError(f"{where} is not a valid ViLMS manifest: {why}",
                           hint="it was not written by `vilms export --push`; remove the run's folder from the store and push again")

    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or set(data) != {"format", "run_id", "files"}:
        raise bad("expected an object with exactly format, run_id and files")
    if data["format"] != MANIFEST_FORMAT:
        raise bad(f"format is {data['format']!r}, expected {MANIFEST_FORMAT!r}")
    if data["run_id"] != run_id:
        raise bad(f"it names run {data['run_id']!r}, not {run_id!r}")
    files = data["files"]
    if not isinstance(files, dict) or not files:
        raise bad("files must be a non-empty object")
    entries: dict[str, Entry] = {}
    for name, entry in files.items():
        if not safe_name(name):
            raise bad(f"file name {name!r} is not allowed (it could leave the run's folder)")
        if (not isinstance(entry, dict) or set(entry) != {"sha256", "size"} or not isinstance(entry["sha256"], str)
                or not SHA256.match(entry["sha256"]) or type(entry["size"]) is not int or entry["size"] < 0):
            raise bad(f"files.{name} must be {{sha256: <64 hex>, size: <bytes>}}")
        entries[name] = Entry(entry["sha256"], entry["size"])
    return Manifest(run_id, entries)


def differences(stored: Manifest, local: Manifest) -> list[str]:
    """What differs between two manifests of one run, one phrase per file, sorted."""
    out = []
    for name in sorted(set(stored.files) | set(local.files)):
        a, b = stored.files.get(name), local.files.get(name)
        if a is None:
            out.append(f"{name} is not in the store")
        elif b is None:
            out.append(f"{name} is in the store but not here")
        elif a != b:
            out.append(f"{name} differs (stored sha256 {a.sha256[:12]}…, here {b.sha256[:12]}…)")
    return out
