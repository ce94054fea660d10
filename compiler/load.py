"""Stage 1, load: bytes → :class:`Document` with positions, or located diagnostics.

ruamel.yaml (round-trip mode) keeps line and column of every node and rejects duplicate
keys. Anchors and aliases are expanded while converting to plain data under a node
budget, so an alias bomb is reported instead of eating memory.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from vilms.compiler.document import Document, Path_
from vilms.compiler.errors import Diagnostic, InvalidInputError

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000  # after alias expansion
MAX_DEPTH = 64


def load(file: Path, display_name: str | None = None) -> Document:
    """Read and parse ``file``. Raises :class:`InvalidInputError` with located diagnostics."""
    name = display_name or file.name
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        raise InvalidInputError([_diag(name, 0, 0, "file not found", "run `vilms init` to write a starter vilms.yaml, or pass -f PATH")]) from None
    except OSError as exc:
        raise InvalidInputError([_diag(name, 0, 0, f"cannot read file: {exc.strerror}")]) from None
    if not file.is_file():
        raise InvalidInputError([_diag(name, 0, 0, "not a regular file", "pass the path of a vilms.yaml with -f")])
    if size > MAX_FILE_BYTES:
        raise InvalidInputError([_diag(
            name, 1, 1,
            f"file is {size / 1048576:.1f} MiB; the limit is {MAX_FILE_BYTES // 1048576} MiB",
            "a vilms.yaml describes models by reference; keep data sets and weights in their own files",
        )])
    raw = file.read_bytes()
    return parse(raw, file=file.resolve(), display_name=name)


def parse(raw: bytes, *, file: Path, display_name: str) -> Document:
    """Parse bytes already read from ``file``."""
    text = _decode(raw, display_name)
    if not text.strip():
        raise InvalidInputError([_diag(display_name, 1, 1, "file is empty", "run `vilms init` to write a commented starter file")])
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        tree = yaml.load(text)
    except DuplicateKeyError as exc:
        line, col = _mark(exc.problem_mark)
        key = _duplicate_key_name(exc)
        first = _mark(exc.context_mark)
        raise InvalidInputError([_diag(
            display_name, line, col,
            f"duplicate key {key!r} (first defined on line {first[0]})" if key else "duplicate key",
            "each key may appear once in a mapping; merge the two entries",
        )]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _mark(mark)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        raise InvalidInputError([_diag(display_name, line, col, f"YAML syntax error: {problem}", _syntax_hint(problem))]) from None
    except YAMLError as exc:
        raise InvalidInputError([_diag(display_name, 1, 1, f"YAML error: {str(exc).splitlines()[0]}")]) from None
    except RecursionError:
        raise InvalidInputError([_diag(display_name, 1, 1, "YAML nesting is too deep")]) from None
    if tree is None:
        raise InvalidInputError([_diag(display_name, 1, 1, "file is empty (only comments)", "run `vilms init` to write a commented starter file")])
    converter = _Converter(display_name)
    data = converter.convert(tree, ())
    if not isinstance(data, dict):
        raise InvalidInputError([_diag(display_name, 1, 1, "the top level must be a mapping (apiVersion:, project:, models:, ...)", "see `vilms schema` or run `vilms init`")])
    converter.values[()] = (1, 1)
    return Document(
        display_name=display_name,
        file=file,
        data=data,
        value_positions=converter.values,
        key_positions=converter.keys,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


class _Converter:
    """ruamel nodes → plain Python data, recording positions and bounding expansion."""

    def __init__(self, display_name: str) -> None:
        self.display_name = display_name
        self.values: dict[Path_, tuple[int, int]] = {}
        self.keys: dict[Path_, tuple[int, int]] = {}
        self.nodes = 0

    def convert(self, node: Any, path: Path_, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            line, col = self.values.get(path[:-1], (1, 1))
            raise InvalidInputError([_diag(
                self.display_name, line, col,
                f"document expands to more than {MAX_NODES:,} nodes (anchor/alias expansion?)",
                "YAML aliases (*name) are expanded; do not nest them to multiply content",
            )])
        if depth > MAX_DEPTH:
            line, col = self.values.get(path[:-1], (1, 1))
            raise InvalidInputError([_diag(self.display_name, line, col, f"nesting deeper than {MAX_DEPTH} levels")])
        if isinstance(node, CommentedMap):
            out: dict[str, Any] = {}
            for key in node:
                if not isinstance(key, str):
                    line, col = node.lc.key(key)
                    raise InvalidInputError([_diag(
                        self.display_name, line + 1, col + 1,
                        f"mapping keys must be strings, got {_kind(key)} {key!r}",
                        "quote the key",
                    )])
                child = path + (key,)
                kl, kc = node.lc.key(key)
                vl, vc = node.lc.value(key)
                self.keys[child] = (kl + 1, kc + 1)
                self.values[child] = (vl + 1, vc + 1)
                out[key] = self.convert(node[key], child, depth + 1)
            return out
        if isinstance(node, CommentedSeq):
            items = []
            for i, item in enumerate(node):
                child = path + (i,)
                line, col = node.lc.item(i)
                self.values[child] = (line + 1, col + 1)
                items.append(self.convert(item, child, depth + 1))
            return items
        if isinstance(node, bool) or node is None:
            return node
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        if isinstance(node, str):
            return str(node)
        if isinstance(node, (_dt.date, _dt.datetime)):
            return node.isoformat()
        if isinstance(node, (set, frozenset)):
            line, col = self.values.get(path, (1, 1))
            raise InvalidInputError([_diag(self.display_name, line, col, "YAML sets (!!set) are not supported")])
        line, col = self.values.get(path, (1, 1))
        raise InvalidInputError([_diag(self.display_name, line, col, f"unsupported YAML value of type {type(node).__name__}")])


def _decode(raw: bytes, name: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise InvalidInputError([_diag(
            name, line, col,
            f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
            "save the file as UTF-8",
        )]) from None


def _diag(file: str, line: int, col: int, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(file=file, line=line, column=col, path="", message=message, hint=hint)


def _mark(mark: Any) -> tuple[int, int]:
    if mark is None:
        return (1, 1)
    return (mark.line + 1, mark.column + 1)


def _duplicate_key_name(exc: DuplicateKeyError) -> str | None:
    problem = exc.problem or ""
    start = problem.find('"')
    end = problem.find('"', start + 1)
    if 0 <= start < end:
        return problem[start + 1 : end]
    return None


def _kind(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number"}.get(type(value), type(value).__name__)


def _syntax_hint(problem: str) -> str | None:
    if "tab" in problem:
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return "a value containing ': ' must be quoted"
    if "could not find expected ':'" in problem:
        return "check the indentation and that every key ends with ':'"
    if "found character" in problem and "cannot start any token" in problem:
        return "quote values that start with special characters such as @, ` or %"
    return None
