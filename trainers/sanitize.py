"""PII and secret redaction for JSONL datasets (``vilms data sanitize``).

Every string value of every row is scanned by the detectors below; matches are replaced
by ``[REDACTED:<kind>]``. The clean dataset is written atomically (temp file + rename) and
an audit log (JSONL) records line, field path, kind, span and length plus a salted hash
that lets identical values be correlated within one audit — never the value itself. The
salt is random per run and never written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilms.compiler.errors import DatasetError, Diagnostic, UsageError

from .atomic import atomic_output
from .datasets.validate import MAX_LINE_BYTES, bounded_lines


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class Detector:
    kind: str
    pattern: re.Pattern[str]
    accept: Callable[[str], bool] | None = None
    group: int = 0
    priority: int = 0  # higher wins on overlap


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    if not 13 <= len(digits) <= 19 or not _luhn(digits):
        return False
    return bool(re.match(r"4|5[1-5]|2[2-7]|3[47]|6(?:011|5|4[4-9])|3(?:0[0-5]|[68])|35", digits))


def _phone(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 10 <= len(digits) <= 15


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _ipv6(text: str) -> bool:
    if text.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def shannon_entropy(text: str) -> float:
    counts: dict[str, int] = {}
    for char in text:
        counts[char] = counts.get(char, 0) + 1
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def _high_entropy(text: str) -> bool:
    if re.fullmatch(r"[0-9a-fA-F-]+", text):  # hex ids / hashes / UUIDs are not secrets by themselves
        return False
    classes = sum(bool(re.search(p, text)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
    return classes >= 3 and shannon_entropy(text) >= 4.0


def _keyword_secret(text: str) -> bool:
    return len(text) >= 8 and bool(re.search(r"\d", text)) and bool(re.search(r"[A-Za-z]", text))


_B = r"(?<![A-Za-z0-9_])"  # left word boundary that treats _ as a word char
_E = r"(?![A-Za-z0-9_])"

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private_key",
        re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.S),
        priority=100,
    ),
    Detector("jwt", re.compile(_B + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), priority=90),
    Detector("aws_access_key", re.compile(_B + r"(?:AKIA|ASIA)[0-9A-Z]{16}" + _E), priority=90),
    Detector(
        "github_token",
        re.compile(_B + r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})" + _E),
        priority=90,
    ),
    Detector("slack_token", re.compile(_B + r"xox[abposr]-[A-Za-z0-9-]{10,}" + _E), priority=90),
    Detector("openai_key", re.compile(_B + r"sk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}" + _E), priority=90),
    Detector(
        "email",
        re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}" + _E),
        priority=80,
    ),
    Detector(
        "secret",
        re.compile(r"(?i:api[_-]?key|secret|token|passwd|password|pwd)[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{8,})"),
        accept=_keyword_secret,
        group=1,
        priority=70,
    ),
    Detector("credit_card", re.compile(r"(?<![\d+-])(?:\d[ -]?){12,18}\d(?![\d-])"), accept=_card, priority=60),
    Detector(
        "ipv6", re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"), accept=_ipv6, priority=50
    ),
    Detector("ipv4", re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)"), accept=_ipv4, priority=50),
    Detector(
        "phone",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{2,4}[ .-]\d{3,4}(?:[ .-]\d{2,4})?(?![\w-])"
            r"|(?<![\w+])\+\d{1,3}(?:[ .-]\d{1,4}){2,6}(?![\w-])"
            r"|(?<![\w+])\+\d{9,14}(?!\w)"
        ),
        accept=_phone,
        priority=40,
    ),
    Detector("high_entropy_secret", re.compile(_B + r"[A-Za-z0-9+/_=-]{24,}" + _E), accept=_high_entropy, priority=10),
)
KINDS = tuple(d.kind for d in DETECTORS)


def parse_user_patterns(specs: Iterable[str]) -> tuple[Detector, ...]:
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
        detectors.append(Detector(name, compiled, priority=200))
    return tuple(detectors)


def find(text: str, detectors: Iterable[Detector] = DETECTORS) -> list[Finding]:
    """All non-overlapping findings in ``text`` (higher priority, then longer, wins)."""
    candidates: list[tuple[int, int, int, str]] = []
    for det in detectors:
        for match in det.pattern.finditer(text):
            start, end = match.span(det.group)
            if end <= start:
                continue
            if det.accept is not None and not det.accept(text[start:end]):
                continue
            candidates.append((det.priority, end - start, start, det.kind))
    candidates.sort(key=lambda c: (-c[0], -c[1], c[2]))
    taken: list[Finding] = []
    for _, length, start, kind in candidates:
        end = start + length
        if all(end <= f.start or start >= f.end for f in taken):
            taken.append(Finding(kind, start, end))
    return sorted(taken, key=lambda f: f.start)


def redact(text: str, findings: list[Finding]) -> str:
    out = []
    cursor = 0
    for finding in findings:
        out.append(text[cursor : finding.start])
        out.append(f"[REDACTED:{finding.kind}]")
        cursor = finding.end
    out.append(text[cursor:])
    return "".join(out)


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from _walk(sub, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            yield from _walk(sub, f"{path}[{index}]")


def _replace(value: Any, path: str, new: dict[str, str]) -> Any:
    if isinstance(value, str):
        return new.get(path, value)
    if isinstance(value, dict):
        return {k: _replace(v, f"{path}.{k}" if path else str(k), new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, f"{path}[{i}]", new) for i, v in enumerate(value)]
    return value


@dataclass(frozen=True)
class SanitizeReport:
    rows: int
    rows_changed: int
    findings: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.findings.values())


def sanitize_file(
    source: Path, output: Path, audit: Path | None = None, extra: Iterable[Detector] = (), display: str | None = None
) -> SanitizeReport:
    """Redact ``source`` into ``output`` (atomically); write the audit log if asked.

    A line that is not a JSON object is a located :class:`DatasetError`, and nothing is
    written.
    """
    name = display or str(source)
    if not source.is_file():
        raise DatasetError([Diagnostic(name, 0, 0, "", "input file not found")])
    if output.resolve() == source.resolve():
        raise UsageError("--output must differ from INPUT (the original is kept)")
    detectors = tuple(extra) + DETECTORS
    salt = os.urandom(16)
    counts: dict[str, int] = {}
    rows = changed = 0
    diags: list[Diagnostic] = []
    with ExitStack() as stack:
        out = stack.enter_context(atomic_output(output, "wb"))
        audit_handle = stack.enter_context(atomic_output(audit)) if audit is not None else None
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
                replaced: dict[str, str] = {}
                for path, text in _walk(row, ""):
                    findings = find(text, detectors)
                    if not findings:
                        continue
                    replaced[path] = redact(text, findings)
                    for f in findings:
                        counts[f.kind] = counts.get(f.kind, 0) + 1
                        if audit_handle is not None:
                            digest = hmac.new(salt, text[f.start : f.end].encode(), hashlib.sha256).hexdigest()
                            audit_handle.write(
                                json.dumps(
                                    {
                                        "line": lineno,
                                        "path": path,
                                        "kind": f.kind,
                                        "span": [f.start, f.end],
                                        "length": f.end - f.start,
                                        "hash": "hmac-sha256:" + digest[:16],
                                    },
                                    sort_keys=True,
                                )
                                + "\n"
                            )
                if replaced:
                    changed += 1
                    out.write(json.dumps(_replace(row, "", replaced), ensure_ascii=False).encode("utf-8") + b"\n")
                else:
                    out.write(line + b"\n")
        if rows == 0 and not diags:
            diags.append(Diagnostic(name, 1, 1, "", "dataset is empty (no rows)"))
        if diags:
            raise DatasetError(diags)  # the atomic writers discard both temp files
    return SanitizeReport(rows=rows, rows_changed=changed, findings=dict(sorted(counts.items())))
