"""Where a YAML problem really is, for the loader's diagnostics.

libyaml reports a tab in the indentation as a character that "cannot start any token",
and an unclosed ``{`` or ``[`` at the first token after it (often the next line). This
module turns such errors into the problem and position a person looks for, and finds
the alias (``*name``) through which an expanded value was reached.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionEndEvent, MappingStartEvent, NodeEvent, SequenceStartEvent

TAB_MESSAGE = "YAML syntax error: tabs are not allowed in indentation"
TAB_HINT = "indent with spaces, not tabs"
_CLOSERS = {"{": "}", "[": "]"}


def syntax_problem(text: str, exc: yaml.MarkedYAMLError) -> tuple[int, int, str, str | None]:
    """``(line, column, message, hint)`` of a libyaml syntax error, 1-based."""
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line, mark.column) if mark is not None else (0, 0)
    lines = text.split("\n")
    source = lines[line] if line < len(lines) else ""
    indent = source[: len(source) - len(source.lstrip(" \t-"))]
    if "\t" in indent or source[col:col + 1] == "\t":
        tab = indent.index("\t") if "\t" in indent else col
        return line + 1, tab + 1, TAB_MESSAGE, TAB_HINT
    opener = exc.context_mark
    if problem.startswith("did not find expected ',' or") and opener is not None:
        start = _offset(lines, opener.line, opener.column)
        bracket = text[start:start + 1]
        if bracket in _CLOSERS and not _closes(text, start):
            return (opener.line + 1, opener.column + 1, f"YAML syntax error: this '{bracket}' is never closed",
                    f"add the matching '{_CLOSERS[bracket]}'")
    return line + 1, col + 1, f"YAML syntax error: {problem}", _hint(problem)


def _offset(lines: list[str], line: int, column: int) -> int:
    return sum(len(text) + 1 for text in lines[:line]) + column


def _closes(text: str, start: int) -> bool:
    """Whether the bracket at ``start`` has its matching closer (quotes and comments skipped)."""
    stack: list[str] = []
    i, n = start, len(text)
    while i < n:
        ch = text[i]
        if ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif ch in "}]":
            if stack.pop() != ch:
                return False
            if not stack:
                return True
        elif ch in "\"'" and text[i - 1] in " \t\n{[,:":
            i = _after_quoted(text, i)
            continue
        elif ch == "#" and text[i - 1] in " \t\n":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        i += 1
    return False


def _after_quoted(text: str, start: int) -> int:
    quote, i = text[start], start + 1
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            if quote == "'" and text[i + 1:i + 2] == "'":
                i += 2
                continue
            return i + 1
        i += 1
    return i


def _hint(problem: str) -> str | None:
    if "mapping values are not allowed" in problem:
        return "a value containing ': ' must be quoted"
    if "could not find expected ':'" in problem:
        return "check the indentation and that every key ends with ':'"
    if problem.startswith("did not find expected ',' or"):
        return "separate the entries of a {...} or [...] with ','"
    if "found character" in problem and "cannot start any token" in problem:
        return "quote values that start with special characters such as @, ` or %"
    return None


def alias_through(text: str, loader: Any, target: tuple) -> tuple[tuple, tuple[int, int]] | None:
    """The path and 1-based position of the alias through which ``target`` was reached, if any.

    Re-reads the event stream (only on the error path): the composed tree has already
    replaced every alias with the node it names, and so lost where the alias stood."""
    frames: list[list[Any]] = []  # [path, is_mapping, expecting_key, key_or_index]
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, CollectionEndEvent):
            frames.pop()
            continue
        if not isinstance(event, NodeEvent):
            continue
        path: tuple | None = ()
        if frames:
            frame = frames[-1]
            if frame[1] and frame[2]:  # a mapping key: no path of its own
                frame[2], frame[3], path = False, getattr(event, "value", None), None
            elif frame[1]:
                frame[2], path = True, None if frame[0] is None else frame[0] + (frame[3],)
            else:
                path = None if frame[0] is None else frame[0] + (frame[3],)
                frame[3] += 1
        if isinstance(event, AliasEvent) and path is not None and target[: len(path)] == path:
            return path, (event.start_mark.line + 1, event.start_mark.column + 1)
        if isinstance(event, (MappingStartEvent, SequenceStartEvent)):
            frames.append([path, isinstance(event, MappingStartEvent), True, 0])
    return None
