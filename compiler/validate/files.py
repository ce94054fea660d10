"""Semantic pass: paths stay inside the project; pinned datasets still have their content.

Paths are checked as written (relative, no ``..``). Dataset paths are also resolved: a
symbolic link must not lead training to data outside the project folder. Weights may be
linked in (a models/ folder on a larger disk is common), so file: weights are not resolved.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from vilms.compiler.digest import sha256_file
from vilms.compiler.document import Document
from vilms.compiler.reporter import Reporter

INSIDE_HINT = "move the file under the folder of vilms.yaml"


def check(doc: Document, report: Reporter) -> None:
    data = doc.data
    for name, dataset in data.get("datasets", {}).items():
        path = ("datasets", name, "path")
        if not _stays_inside(doc, report, path, dataset["path"], "dataset paths", resolve=True):
            continue
        pinned = dataset.get("sha256")
        file = doc.root / dataset["path"]
        if pinned and file.is_file():
            try:
                actual = sha256_file(file)
            except OSError as exc:
                report.error(path, f"cannot read {dataset['path']}: {exc.strerror}")
                continue
            if actual != pinned:
                report.error(("datasets", name, "sha256"),
                             f"content of {dataset['path']} changed since it was pinned (now sha256 {actual[:12]}…)",
                             hint="review the data, then update sha256 (vilms data manifest prints it), or restore the file")
    for name, model in data.get("models", {}).items():
        for key, what in (("source", "file: sources"), ("gguf", "file: gguf paths")):
            ref = model.get(key, "")
            if ref.startswith("file:"):
                _stays_inside(doc, report, ("models", name, key), ref[5:], what, resolve=False)


def _stays_inside(doc: Document, report: Reporter, path: tuple, relative: str, what: str, *, resolve: bool) -> bool:
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        report.error(path, f"{what} must be relative and stay inside the project folder", hint=INSIDE_HINT)
        return False
    if not resolve:
        return True
    root = doc.root.resolve()
    try:
        real = (root / relative).resolve()
    except (OSError, RuntimeError):  # a symbolic link loop
        report.error(path, f"{relative} cannot be resolved (a loop of symbolic links)", hint=INSIDE_HINT)
        return False
    if real != root and root not in real.parents:
        report.error(path, f"{relative} leads outside the project folder through a symbolic link (to {real})",
                     hint="copy the file into the project instead of linking to it")
        return False
    return True
