"""Collects located diagnostics for one document."""

from __future__ import annotations

from vilms.compiler.document import Document, Path_, dotted
from vilms.compiler.errors import Diagnostic


class Reporter:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.diagnostics: list[Diagnostic] = []

    def error(self, path: Path_, message: str, *, hint: str | None = None, at_key: bool = False) -> None:
        line, column = self.doc.locate(path, key=at_key)
        self.diagnostics.append(Diagnostic(
            file=self.doc.display_name, line=line, column=column,
            path=dotted(path), message=message, hint=hint,
        ))
