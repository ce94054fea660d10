"""PII and secret redaction for JSONL datasets (``vilms data sanitize``).

Every string of every row — values and object keys — is scanned by the detectors in
:mod:`vilms.trainers.detect`; matches are replaced by ``[REDACTED:<kind>]``. The clean dataset
is written atomically (temp file + rename) and an audit log (JSONL) records line, field path,
kind, span and length plus a salted hash that lets identical values be correlated within one
audit — never the value itself. Paths are built from the redacted keys, so a key that held an
email appears as ``meta.[REDACTED:email]``; a finding inside a key is marked ``"key": true``.
The salt is random per run and never written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vilms.compiler.errors import DatasetError, Diagnostic, UsageError

from .atomic import atomic_output
from .datasets.validate import MAX_LINE_BYTES, bounded_lines
from .detect import DEFAULT_REGIONS, Finding, RegexDetector, Scanner, build_scanner

__all__ = ["DEFAULT_REGIONS", "Finding", "SanitizeReport", "find", "parse_user_patterns", "redact", "sanitize_file"]


def parse_user_patterns(specs: Iterable[str]) -> tuple[RegexDetector, ...]:
    """``NAME=REGEX`` strings from the command line → detectors (highest priority)."""
    detectors = []
    for spec in specs:
        name, sep, regex = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name) or not regex:
            raise UsageError(f"--pattern {spec!r}: expected NAME=REGEX (NAME: letters, digits, _ or -)")
        try:
            compiled = re.compile(regex)
        except re.error as exc:
            raise UsageError(f"--pattern {name}: invalid regular expression: {exc}") from None
        if compiled.search(""):
            raise UsageError(f"--pattern {name}: the expression matches the empty string")
        detectors.append(RegexDetector(name, compiled, priority=200))
    return tuple(detectors)


def find(text: str, extra: Iterable[RegexDetector] = (), regions: Iterable[str] = DEFAULT_REGIONS) -> list[Finding]:
    """All non-overlapping findings in ``text`` (higher priority, then longer, wins)."""
    return build_scanner(tuple(extra), tuple(regions)).find(text)


def redact(text: str, findings: list[Finding]) -> str:
    out = []
    cursor = 0
    for finding in findings:
        out.append(text[cursor : finding.start])
        out.append(f"[REDACTED:{finding.kind}]")
        cursor = finding.end
    out.append(text[cursor:])
    return "".join(out)


class _RowSanitizer:
    """Walks one row, redacting values and keys; ``emit`` receives each finding with its path."""

    def __init__(self, scanner: Scanner, emit: Callable[[str, str, Finding, bool], None]) -> None:
        self.scanner = scanner
        self.emit = emit
        self.changed = False

    def _text(self, text: str, path: str, key: bool) -> str:
        findings = self.scanner.find(text)
        if not findings:
            return text
        self.changed = True
        for finding in findings:
            self.emit(path, text, finding, key)
        return redact(text, findings)

    def value(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            return self._text(value, path, False)
        if isinstance(value, list):
            return [self.value(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, sub in value.items():
                findings = self.scanner.find(key)
                new_key = redact(key, findings) if findings else key
                if new_key in out:  # two keys redacted alike: keep both
                    n = 2
                    while f"{new_key}~{n}" in out:
                        n += 1
                    new_key = f"{new_key}~{n}"
                sub_path = f"{path}.{new_key}" if path else new_key
                if findings:
                    self.changed = True
                    for finding in findings:
                        self.emit(sub_path, key, finding, True)
                out[new_key] = self.value(sub, sub_path)
            return out
        return value


@dataclass(frozen=True)
class SanitizeReport:
    rows: int
    rows_changed: int
    findings: dict[str, int]
    ner: str | None = None  # the NER model used for names, if one is installed

    @property
    def total(self) -> int:
        return sum(self.findings.values())


def _audit_writer(handle: IO[str] | None, salt: bytes, counts: dict[str, int], lineno: list[int]):  # type: ignore[no-untyped-def]
    def emit(path: str, text: str, f: Finding, key: bool) -> None:
        counts[f.kind] = counts.get(f.kind, 0) + 1
        if handle is None:
            return
        digest = hmac.new(salt, text[f.start : f.end].encode(), hashlib.sha256).hexdigest()
        entry = {
            "line": lineno[0],
            "path": path,
            "kind": f.kind,
            "span": [f.start, f.end],
            "length": f.end - f.start,
            "hash": "hmac-sha256:" + digest[:16],
        }
        if key:
            entry["key"] = True
        handle.write(json.dumps(entry, sort_keys=True) + "\n")

    return emit


def sanitize_file(
    source: Path,
    output: Path,
    audit: Path | None = None,
    extra: Iterable[RegexDetector] = (),
    display: str | None = None,
    regions: Iterable[str] = DEFAULT_REGIONS,
) -> SanitizeReport:
    """Redact ``source`` into ``output`` (atomically); write the audit log if asked.

    A line that is not a JSON object is a located :class:`DatasetError`, and nothing is
    written. ``regions`` are the ISO 3166 codes whose national phone formats are recognised.
    """
    name = display or str(source)
    if not source.is_file():
        raise DatasetError([Diagnostic(name, 0, 0, "", "input file not found")])
    if output.resolve() == source.resolve():
        raise UsageError("--output must differ from INPUT (the original is kept)")
    scanner = build_scanner(tuple(extra), tuple(regions))
    salt = os.urandom(16)
    counts: dict[str, int] = {}
    rows = changed = 0
    diags: list[Diagnostic] = []
    lineno_box = [0]
    with ExitStack() as stack:
        out = stack.enter_context(atomic_output(output, "wb"))
        audit_handle = stack.enter_context(atomic_output(audit)) if audit is not None else None
        emit = _audit_writer(audit_handle, salt, counts, lineno_box)
        with open(source, "rb") as handle:
            for lineno, line, too_long in bounded_lines(handle, MAX_LINE_BYTES):
                if too_long:
                    diags.append(Diagnostic(name, lineno, 1, "", f"line longer than the limit of {MAX_LINE_BYTES} bytes"))
                    continue
                if not line.strip():
                    diags.append(Diagnostic(name, lineno, 1, "", "empty line"))
                    continue
                try:
                    row = json.loads(line.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    diags.append(Diagnostic(name, lineno, exc.start + 1, "", "not valid UTF-8"))
                    continue
                except json.JSONDecodeError as exc:
                    diags.append(Diagnostic(name, lineno, exc.colno, "", f"invalid JSON: {exc.msg}"))
                    continue
                if not isinstance(row, dict):
                    diags.append(Diagnostic(name, lineno, 1, "", "expected a JSON object"))
                    continue
                rows += 1
                lineno_box[0] = lineno
                walker = _RowSanitizer(scanner, emit)
                clean = walker.value(row, "")
                if walker.changed:
                    changed += 1
                    out.write(json.dumps(clean, ensure_ascii=False).encode("utf-8") + b"\n")
                else:
                    out.write(line + b"\n")
        if rows == 0 and not diags:
            diags.append(Diagnostic(name, 1, 1, "", "dataset is empty (no rows)"))
        if diags:
            raise DatasetError(diags)  # the atomic writers discard both temp files
    return SanitizeReport(rows=rows, rows_changed=changed, findings=dict(sorted(counts.items())), ner=scanner.ner)
