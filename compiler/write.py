"""Stage 5, write: swap a fully built tree into ``generated/``, or check it is up to date.

The tree is written to a temporary sibling folder and swapped in with two renames only
when every file was written (Kapitan's compile-then-swap), so a failed build never
leaves a half-written ``generated/``. Files no longer produced disappear with the old
tree. ``manifest.json`` records the input hash, the vilms version and every file's sha256.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler.contracts.build_manifest import BUILD_MANIFEST, BuildInput, BuildManifest
from vilms.compiler.layout import MANIFEST


def vilms_version() -> str:
    from vilms.compiler import __version__

    return __version__


def with_manifest(files: dict[str, bytes], input_sha256: str, source_name: str) -> dict[str, bytes]:
    manifest = BuildManifest(
        generator="vilms",
        vilms_version=vilms_version(),
        input=BuildInput(file=source_name, sha256=input_sha256),
        files={path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())},
    )
    return {**files, MANIFEST: BUILD_MANIFEST.dump(manifest)}


@dataclass(frozen=True)
class Drift:
    path: str
    state: str  # differs | missing | unexpected


def diff_tree(out_dir: Path, files: dict[str, bytes]) -> list[Drift]:
    """How ``out_dir`` differs from ``files`` (empty when up to date)."""
    drifts = []
    existing = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()} if out_dir.is_dir() else set()
    for rel, data in sorted(files.items()):
        target = out_dir / rel
        if rel not in existing:
            drifts.append(Drift(rel, "missing"))
        elif target.read_bytes() != data:
            drifts.append(Drift(rel, "differs"))
    drifts.extend(Drift(rel, "unexpected") for rel in sorted(existing - set(files)))
    return drifts


def write_tree(out_dir: Path, files: dict[str, bytes]) -> None:
    parent = out_dir.parent
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-", dir=parent))
    try:
        for rel, data in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            os.chmod(target, 0o644)
        os.chmod(staging, 0o755)
        for folder in staging.rglob("*"):
            if folder.is_dir():
                os.chmod(folder, 0o755)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = None
    if out_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=parent))
        retired.rmdir()
        os.replace(out_dir, retired)
    try:
        os.replace(staging, out_dir)
    except BaseException:
        if retired is not None:
            os.replace(retired, out_dir)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
