"""One contract: a file that crosses a package boundary, its dataclass tree and its schema.

The writer calls :meth:`Contract.dump`, which serialises the dataclass (every key, no
defaults left to the reader) and returns bytes. Every reader calls :meth:`Contract.load` (or :meth:`Contract.parse`): the
compiler's loader gives positions, the apiVersion and kind are checked first (a file from
another ViLMS version gets "rebuild with this version"), then the schema, and every
problem is reported at once as ``file:line:col: path: message``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

from jsonschema import Draft202012Validator

from vilms.compiler.document import Document
from vilms.compiler.errors import Diagnostic, InvalidInputError
from vilms.compiler.load import parse as parse_yaml
from vilms.compiler.reporter import Reporter
from vilms.compiler.schema_errors import report_errors, strict_validator
from vilms.compiler.serialize import to_json, to_yaml

from .codec import from_data, to_data
from .finite import non_finite

# Bump when any contract's shape changes: a reader refuses files of another version with
# "rebuild with this version" instead of a list of unknown keys.
API_VERSION = "contracts.vilms.dev/v1"

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Contract(Generic[T]):
    kind: str  # the file's `kind`
    root: type[T]  # the frozen dataclass the file holds (apiVersion and kind aside)
    schema_file: str  # in vilms/compiler/contracts/schemas/
    format: str  # yaml | json
    remedy: str  # how a user gets a good file again, e.g. "run `vilms build`"
    # cross-field rules the schema cannot say (references between entries), on a file the
    # schema accepted: report each problem at its path
    check: Callable[[Any, Reporter], None] | None = None

    @cached_property
    def schema(self) -> dict[str, Any]:
        text = resources.files("vilms.compiler.contracts").joinpath("schemas", self.schema_file).read_text(encoding="utf-8")
        return json.loads(text)

    @cached_property
    def validator(self) -> Draft202012Validator:
        return strict_validator(self.schema)

    # --- writing

    def data(self, value: T) -> dict[str, Any]:
        """``value`` as the plain data written to the file. Refuses inf and NaN, which no reader
        accepts. The schema is not checked here: a dataclass tree holds the schema's keys by
        construction (tests/contracts), and the constraints are checked where it matters,
        by every reader, by the tests for every writer, and by :meth:`problems` on demand;
        checking on every write cost a cold `vilms build` about 8 ms (bench/compile.py)."""
        bad = [".".join(map(str, path)) for path, _number in non_finite(value)]
        if bad:  # the writer must map them (see run_record.finite); never bad input
            raise AssertionError(f"{self.kind}: not a finite number at {', '.join(bad)}")
        return {"apiVersion": API_VERSION, "kind": self.kind, **to_data(value)}

    def problems(self, data: dict[str, Any]) -> list[str]:
        """What the schema finds wrong with ``data`` as a writer made it (``path: message`` each)."""
        return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in self.validator.iter_errors(data)]

    def dump(self, value: T, *, source: str | None = None) -> bytes:
        """The file's bytes (YAML with a "generated from ``source``" header, or JSON)."""
        data = self.data(value)
        return to_json(data) if self.format == "json" else to_yaml(data, source=source)

    # --- reading

    def load(self, path: Path, display: str | None = None) -> T:
        """Read ``path`` and return its dataclass; raise InvalidInputError naming every problem."""
        shown = display or str(path)
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            raise self._invalid([Diagnostic(shown, 0, 0, "", "file not found")]) from None
        except IsADirectoryError:
            raise self._invalid([Diagnostic(shown, 0, 0, "", "is a folder, not a file")]) from None
        except OSError as exc:
            raise self._invalid([Diagnostic(shown, 0, 0, "", f"cannot read file: {exc.strerror or exc}")]) from None
        return self.parse(raw, shown, file=Path(path))

    def parse(self, raw: bytes, display: str, *, file: Path | None = None) -> T:
        try:
            doc = parse_yaml(raw, file=file or Path(display), display_name=display)
        except InvalidInputError as exc:  # the loader's hints speak of vilms.yaml; this file is ViLMS's own
            raise self._invalid([replace(d, message=self._language(d.message), hint=None) for d in exc.diagnostics]) from None
        return self.from_document(doc)

    def _language(self, message: str) -> str:
        """The loader parses JSON as the YAML it is; its messages name the file's own language."""
        return "JSON" + message[4:] if self.format == "json" and message.startswith("YAML ") else message

    def from_document(self, doc: Document) -> T:
        report = Reporter(doc)
        data = doc.data
        if not isinstance(data, dict):
            report.error((), f"expected a {self.kind} mapping")
        elif data.get("kind") != self.kind and "kind" in data:
            report.error(("kind",), f"this is a {data['kind']!r} file, not a {self.kind!r}")
        elif data.get("apiVersion") != API_VERSION:
            found = data.get("apiVersion")
            report.error(("apiVersion",) if "apiVersion" in data else (),
                         f"written by another ViLMS version ({'apiVersion ' + repr(found) if found else 'no apiVersion'}); "
                         f"this ViLMS reads {API_VERSION}")
            raise self._invalid(report.diagnostics, hint=f"{self.remedy} with this version of ViLMS")
        else:
            report_errors(self.validator, data, report)
        if report.diagnostics:
            raise self._invalid(report.diagnostics)
        value = from_data(self.root, {k: v for k, v in data.items() if k not in ("apiVersion", "kind")})
        if self.check is not None:
            self.check(value, report)
            if report.diagnostics:
                raise self._invalid(report.diagnostics)
        return value

    def _invalid(self, diagnostics: list[Diagnostic], hint: str | None = None) -> InvalidInputError:
        return InvalidInputError(diagnostics, what=f"invalid {self.kind} file",
                                 hint=hint or f"ViLMS writes this file; do not edit it by hand: {self.remedy}")
