"""Line-by-line validation of JSONL datasets with located errors.

Each line is read with a bounded length (a 10 MB line is reported, never loaded whole),
decoded as UTF-8, parsed as JSON and checked against its format::

    data/x.jsonl:17:1: messages[2].role: unknown role 'bot' (expected system, user, assistant)

Every problem in the file is collected (up to :data:`MAX_DIAGNOSTICS`) before raising.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from vilms.compiler.errors import DatasetError, Diagnostic

MAX_LINE_BYTES = 1 << 20  # 1 MiB per JSONL row
MAX_DIAGNOSTICS = 100
ROLES = ("system", "user", "assistant")
_TOP_LEVEL_EXTRA = ("id", "meta")


@dataclass(frozen=True)
class Dataset:
    """A validated dataset: its rows (parsed JSON objects) and the content hash."""

    path: Path
    format: str
    rows: tuple[dict[str, Any], ...]
    sha256: str
    size_bytes: int


def load_dataset(path: Path, fmt: str, display: str | None = None, max_line_bytes: int = MAX_LINE_BYTES) -> Dataset:
    """Validate every row of ``path``; raise :class:`DatasetError` listing all problems."""
    name = display or str(path)
    if not path.is_file():
        raise DatasetError([Diagnostic(name, 0, 0, "", "dataset file not found")])
    diags: list[Diagnostic] = []
    rows: list[dict[str, Any]] = []
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for lineno, raw, too_long in bounded_lines(handle, max_line_bytes, digest):
            if len(diags) >= MAX_DIAGNOSTICS:
                continue
            if too_long:
                diags.append(
                    Diagnostic(
                        name,
                        lineno,
                        1,
                        "",
                        f"line is {too_long} bytes, longer than the limit of {max_line_bytes} bytes",
                        hint="split long documents into several rows",
                    )
                )
                continue
            row = _parse_line(raw, lineno, name, diags)
            if row is None:
                continue
            before = len(diags)
            for path_, message in check_row(row, fmt):
                diags.append(Diagnostic(name, lineno, 1, path_, message))
            if len(diags) == before:
                rows.append(row)
    if not diags and not rows:
        diags.append(Diagnostic(name, 1, 1, "", "dataset is empty (no rows)"))
    if diags:
        if len(diags) >= MAX_DIAGNOSTICS:
            diags = diags[:MAX_DIAGNOSTICS]
            diags.append(Diagnostic(name, 0, 0, "", f"stopped after {MAX_DIAGNOSTICS} problems"))
        raise DatasetError(diags)
    return Dataset(path=path, format=fmt, rows=tuple(rows), sha256=digest.hexdigest(), size_bytes=path.stat().st_size)


def bounded_lines(handle: BinaryIO, limit: int, digest: Any = None) -> Iterator[tuple[int, bytes, int]]:
    """Yield (line number, bytes without newline, overlong size or 0) with bounded reads.

    A line longer than ``limit`` is skipped without being held in memory (its bytes come
    back empty, with its size); ``digest``, when given, sees every byte of the file."""
    lineno = 0
    while True:
        chunk = handle.readline(limit + 1)
        if not chunk:
            return
        lineno += 1
        if digest is not None:
            digest.update(chunk)
        if len(chunk) > limit and not chunk.endswith(b"\n"):
            total = len(chunk)
            while not chunk.endswith(b"\n"):
                chunk = handle.readline(1 << 20)
                if not chunk:
                    break
                if digest is not None:
                    digest.update(chunk)
                total += len(chunk)
            yield lineno, b"", total
            continue
        yield lineno, chunk.rstrip(b"\n").rstrip(b"\r"), 0


def _parse_line(raw: bytes, lineno: int, name: str, diags: list[Diagnostic]) -> dict[str, Any] | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        diags.append(
            Diagnostic(
                name,
                lineno,
                exc.start + 1,
                "",
                f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                hint="re-encode the file as UTF-8",
            )
        )
        return None
    if not text.strip():
        diags.append(Diagnostic(name, lineno, 1, "", "empty line (JSONL needs one JSON object per line)"))
        return None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        diags.append(Diagnostic(name, lineno, exc.colno, "", f"invalid JSON: {exc.msg}"))
        return None
    if not isinstance(row, dict):
        diags.append(Diagnostic(name, lineno, 1, "", f"expected a JSON object, got {_kind(row)}"))
        return None
    return row


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def check_row(row: dict[str, Any], fmt: str) -> list[tuple[str, str]]:
    """Return (field path, message) for every problem in one parsed row."""
    required = {"chat": ("messages",), "completion": ("prompt", "completion"), "text": ("text",)}[fmt]
    problems: list[tuple[str, str]] = []
    for key in row:
        if key not in required and key not in _TOP_LEVEL_EXTRA:
            problems.append((key, f"unknown key '{key}' for format {fmt} (expected {', '.join(required)})"))
    for key in required:
        if key not in row:
            problems.append((key, f"missing required key '{key}' for format {fmt}"))
    if problems:
        return problems
    if fmt == "chat":
        return _check_messages(row["messages"])
    for key in required:
        value = row[key]
        if not isinstance(value, str):
            problems.append((key, f"expected a string, got {_kind(value)}"))
        elif not value.strip():
            problems.append((key, "must not be empty"))
    return problems


def _check_messages(messages: Any) -> list[tuple[str, str]]:
    if not isinstance(messages, list):
        return [("messages", f"expected an array of messages, got {_kind(messages)}")]
    if not messages:
        return [("messages", "must contain at least one message")]
    problems: list[tuple[str, str]] = []
    roles: list[str | None] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            problems.append((where, f"expected an object, got {_kind(message)}"))
            roles.append(None)
            continue
        for key in message:
            if key not in ("role", "content"):
                problems.append((f"{where}.{key}", f"unknown key '{key}' (expected role, content)"))
        role = message.get("role")
        if "role" not in message:
            problems.append((f"{where}.role", "missing required key 'role'"))
        elif not isinstance(role, str) or role not in ROLES:
            problems.append((f"{where}.role", f"unknown role {role!r} (expected {', '.join(ROLES)})"))
        content = message.get("content")
        if "content" not in message:
            problems.append((f"{where}.content", "missing required key 'content'"))
        elif not isinstance(content, str):
            problems.append((f"{where}.content", f"expected a string, got {_kind(content)}"))
        elif role == "assistant" and not content.strip():
            problems.append((f"{where}.content", "assistant content must not be empty"))
        roles.append(role if isinstance(role, str) else None)
        if role == "system" and index != 0:
            problems.append((f"{where}.role", "a system message may only come first"))
    if problems:
        return problems
    if roles[-1] != "assistant":
        problems.append(
            (f"messages[{len(messages) - 1}].role", f"the last message must be from the assistant, got {roles[-1]!r}")
        )
    turns = [r for r in roles if r != "system"]
    if not turns or turns[0] != "user":
        problems.append(("messages", "the first non-system message must be from the user"))
    for index in range(1, len(roles)):
        if roles[index] == roles[index - 1] and roles[index] != "system":
            problems.append((f"messages[{index}].role", f"two {roles[index]} messages in a row"))
    return problems
