"""Committed JSONL logs of contract entries, one entry per line (``.vilms/releases/<adapter>.jsonl``,
``.vilms/approvals/<adapter>.jsonl``): reading them whole, a UTF-8 BOM and CRLF tolerated, every
problem located as ``<file>:LINE:COL: path: message``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from vilms.compiler.contracts.contract import Contract
from vilms.compiler.errors import ActionError, Diagnostic, InvalidInputError

T = TypeVar("T")


def read_log(path: Path, display: str, what: str, read_line: Callable[[bytes, str, int], T]) -> tuple[T, ...]:
    """Every entry of the log at ``path`` (``what`` names it in errors), oldest first; none when
    there is no file. ``read_line(line, display, number)`` reads one non-blank line."""
    if not path.is_file():
        return ()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ActionError(f"cannot read the {what} {display}: {exc.strerror or exc}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return tuple(read_line(line.rstrip(b"\r"), display, number)
                 for number, line in enumerate(raw.split(b"\n"), 1) if line.strip())


def json_object(line: bytes, display: str, number: int, contract: Contract[Any]) -> dict[str, Any]:
    """Line ``number`` as a JSON object, or the located reason it is not one."""
    try:
        data = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise invalid(contract, Diagnostic(display, number, exc.start + 1, "", "not valid UTF-8")) from None
    except ValueError as exc:
        raise invalid(contract, Diagnostic(display, number, exc.colno, "", f"not valid JSON ({exc.msg})")) from None
    if not isinstance(data, dict):
        column = len(line) - len(line.lstrip()) + 1
        raise invalid(contract, Diagnostic(display, number, column, "", "expected a JSON object ({...}), one per line"))
    return data


def on_line(exc: InvalidInputError, number: int) -> InvalidInputError:
    """``exc``, raised for one line parsed on its own, located at line ``number`` of the file."""
    moved = InvalidInputError([replace(d, line=d.line + number - 1 if d.line else number) for d in exc.diagnostics],
                              hint=exc.hint)
    moved.message = exc.message
    return moved


def invalid(contract: Contract[Any], *diagnostics: Diagnostic) -> InvalidInputError:
    return InvalidInputError(list(diagnostics), what=f"invalid {contract.kind} file",
                             hint=f"each line is one JSON object; {contract.remedy}")
