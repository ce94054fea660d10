"""Semantic pass: paths stay inside the project; pinned datasets still have their content."""

from __future__ import annotations

from pathlib import PurePosixPath

from vilms.compiler.digest import sha256_file
from vilms.compiler.document import Document
from vilms.compiler.reporter import Reporter


def check(doc: Document, report: Reporter) -> None:
    data = doc.data
    for name, dataset in data.get("datasets", {}).items():
        path = ("datasets", name, "path")
        if _escapes(dataset["path"]):
            report.error(path, "dataset paths must be relative and stay inside the project folder",
                         hint="move the file under the folder of vilms.yaml")
            continue
        pinned = dataset.get("sha256")
        file = doc.root / dataset["path"]
        if pinned and file.is_file():
            actual = sha256_file(file)
            if actual != pinned:
                report.error(("datasets", name, "sha256"),
                             f"content of {dataset['path']} changed since it was pinned (now sha256 {actual[:12]}…)",
                             hint="review the data, then update sha256 (vilms data manifest prints it), or restore the file")
    for name, model in data.get("models", {}).items():
        source = model["source"]
        if source.startswith("file:") and _escapes(source[5:]):
            report.error(("models", name, "source"), "file: sources must be relative and stay inside the project folder")


def _escapes(path: str) -> bool:
    pure = PurePosixPath(path)
    return pure.is_absolute() or ".." in pure.parts
