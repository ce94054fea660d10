"""Stage 1, load: bytes → :class:`Document` with positions, or located diagnostics.

The document is composed by libyaml (through PyYAML's C parser, about ten times faster
than a pure-Python parser on large files) with YAML 1.2 core-schema scalars: ``yes``,
``on`` and ``no`` stay strings, there are no sexagesimal numbers or implicit dates.
Every key and value keeps its line and column; duplicate keys are errors; anchors and
aliases are expanded under a node budget and a byte budget, so an alias bomb is reported,
not expanded. Numbers are finite and integers fit in 64 bits: no reader of a ViLMS file
ever sees ``nan``, ``inf`` or an integer some other tool cannot parse.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vilms.compiler.document import Document, Path_, dotted
from vilms.compiler.errors import Diagnostic, InvalidInputError
from vilms.compiler.yaml_locate import alias_through, syntax_problem

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000  # after alias expansion
MAX_EXPANDED_BYTES = 16 * 1024 * 1024  # of every scalar (keys included), after alias expansion
MAX_DEPTH = 64
INT_LIMIT = 2**63  # integers must be smaller in magnitude: every tool reading the output parses an int64


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
    try:
        root = compose(text)
    except yaml.MarkedYAMLError as exc:
        line, col, message, hint = syntax_problem(text, exc)
        raise InvalidInputError([_diag(display_name, line, col, message, hint)]) from None
    except yaml.YAMLError as exc:
        raise InvalidInputError([_diag(display_name, 1, 1, f"YAML error: {str(exc).splitlines()[0]}")]) from None
    except RecursionError:
        raise InvalidInputError([_diag(display_name, 1, 1, "YAML nesting is too deep")]) from None
    if root is None:
        raise InvalidInputError([_diag(display_name, 1, 1, "file is empty (only comments)", "run `vilms init` to write a commented starter file")])
    converter = _Converter(display_name, text)
    try:
        data = converter.convert(root, ())
    except InvalidInputError as exc:
        raise InvalidInputError(converter.numbers + exc.diagnostics) from None
    if converter.numbers:  # every number no reader could take, at once
        raise InvalidInputError(converter.numbers)
    if not isinstance(data, dict):
        raise InvalidInputError([_diag(display_name, 1, 1, "the top level must be a mapping",
                                       "a vilms.yaml starts with apiVersion:, project:, models:; see `vilms schema` or run `vilms init`")])
    converter.values[()] = (1, 1)
    return Document(
        display_name=display_name,
        file=file,
        data=data,
        value_positions=converter.values,
        key_positions=converter.keys,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


_CParser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def compose(text: str) -> yaml.Node | None:
    """The YAML node tree of ``text``, every node with its start and end marks; nothing constructed."""
    return yaml.compose(text, Loader=_Loader)  # noqa: S506 - composes nodes only, constructs nothing


class _Loader(_CParser):  # type: ignore[misc, valid-type]
    """libyaml's parser with YAML 1.2 core-schema implicit tags (no yes/no booleans, no dates)."""

    yaml_implicit_resolvers: dict = {}


_CORE_SCHEMA = {
    "tag:yaml.org,2002:null": (r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    "tag:yaml.org,2002:bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    "tag:yaml.org,2002:int": (r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    "tag:yaml.org,2002:float": (
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+0123456789."),
    ),
}
for _tag, (_pattern, _first) in _CORE_SCHEMA.items():
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)

_STR, _NULL, _BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("str", "null", "bool", "int", "float"))


class _Converter:
    """YAML nodes → plain Python data, recording positions and bounding expansion."""

    def __init__(self, display_name: str, text: str) -> None:
        self.display_name = display_name
        self.text = text
        self.values: dict[Path_, tuple[int, int]] = {}
        self.keys: dict[Path_, tuple[int, int]] = {}
        self.nodes = 0
        self.bytes = 0
        self.numbers: list[Diagnostic] = []  # non-finite and out-of-range numbers, reported together

    def fail(self, node: Node, path: Path_, message: str, hint: str | None = None) -> InvalidInputError:
        line, col = _mark(node.start_mark)
        return InvalidInputError([_diag(self.display_name, line, col, message, hint, path)])

    def fail_expanded(self, node: Node, path: Path_, message: str) -> InvalidInputError:
        """An expansion budget is exceeded at ``path``: located at the alias that reached it."""
        found = alias_through(self.text, _Loader, path)
        if found is None:
            return self.fail(node, path, message, _ALIAS_HINT)
        alias_path, (line, col) = found
        return InvalidInputError([_diag(self.display_name, line, col, f"{message} at this alias", _ALIAS_HINT, alias_path)])

    def convert(self, node: Node, path: Path_, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail_expanded(node, path, f"document expands to more than {MAX_NODES:,} nodes")
        if depth > MAX_DEPTH:
            raise self.fail(node, path, f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(node, MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise self.fail(node, path, f"unsupported YAML tag {node.tag!r}", "remove the tag; vilms.yaml holds plain data only")
            out: dict[str, Any] = {}
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                    raise self.fail(key_node, path, f"mapping keys must be strings, got {_describe(key_node)}", "quote the key")
                key = key_node.value
                child = path + (key,)
                if key == "<<" and not key_node.style:
                    raise self.fail(key_node, child, "merge keys (<<) are not supported", "write the keys out; YAML 1.2 has no merge keys")
                if key in first_line:
                    raise self.fail(key_node, child, f"duplicate key {key!r} (first defined on line {first_line[key]})",
                                    "each key may appear once in a mapping; merge the two entries")
                self.count_bytes(key_node, child, key)
                first_line[key] = key_node.start_mark.line + 1
                self.keys[child] = _mark(key_node.start_mark)
                self.values[child] = _mark(value_node.start_mark)
                out[key] = self.convert(value_node, child, depth + 1)
            return out
        if isinstance(node, SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise self.fail(node, path, f"unsupported YAML tag {node.tag!r}", "remove the tag; vilms.yaml holds plain data only")
            items = []
            for i, item in enumerate(node.value):
                child = path + (i,)
                self.values[child] = _mark(item.start_mark)
                items.append(self.convert(item, child, depth + 1))
            return items
        return self.scalar(node, path)

    def count_bytes(self, node: Node, path: Path_, value: str) -> None:
        self.bytes += len(value) if value.isascii() else len(value.encode("utf-8"))
        if self.bytes > MAX_EXPANDED_BYTES:
            raise self.fail_expanded(node, path, f"document expands to more than {MAX_EXPANDED_BYTES // 1048576} MiB")

    def scalar(self, node: ScalarNode, path: Path_) -> Any:
        tag, value = node.tag, node.value
        self.count_bytes(node, path, value)
        if tag == _STR:
            return value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return value.lower() == "true"
        if tag == _INT:
            return self.integer(node, path, value)
        if tag == _FLOAT:
            return self.finite(node, path, value)
        raise self.fail(node, path, f"unsupported YAML tag {tag!r}", "remove the tag; vilms.yaml holds plain data only")

    def finite(self, node: ScalarNode, path: Path_, value: str) -> float:
        special = value.lstrip("+-").lower() in (".inf", ".nan")  # YAML's spellings, not Python's
        number = math.inf if special else float(value)  # 1e999 overflows to inf
        if not math.isfinite(number):
            self.numbers += self.fail(node, path, f"{_short(value)} is not a finite number",
                                      f'write a finite number (or quote it if you mean the text: "{_short(value)}")').diagnostics
            return 0.0
        return number

    def integer(self, node: ScalarNode, path: Path_, value: str) -> int:
        base = {"0o": 8, "0x": 16}.get(value[:2], 10)
        digits = (value[2:] if base != 10 else value.lstrip("+-")).lstrip("0")
        # checked before converting: Python refuses to convert decimal strings of more than 4,300 digits
        number = int(digits or "0", base) if len(digits) <= 22 else INT_LIMIT
        if number >= INT_LIMIT:
            self.numbers += self.fail(node, path, f"integer {_short(value)} is out of range",
                                      f"integers must be smaller than 2**63 ({INT_LIMIT}) in magnitude").diagnostics
            return 0
        return -number if value.startswith("-") else number


_ALIAS_HINT = "YAML aliases (*name) are expanded where they are used; do not use them to multiply content"


def _decode(raw: bytes, name: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise InvalidInputError([_diag(name, line, col, f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})", "save the file as UTF-8")]) from None
    bad = re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text)
    if bad:
        before = text[: bad.start()]
        line = before.count("\n") + 1
        col = bad.start() - (before.rfind("\n") + 1) + 1
        raise InvalidInputError([_diag(name, line, col, f"control character U+{ord(bad.group()):04X} in file",
                                       "remove it; write escapes such as \\t inside double-quoted strings")])
    return text


def _diag(file: str, line: int, col: int, message: str, hint: str | None = None, path: Path_ = ()) -> Diagnostic:
    return Diagnostic(file=file, line=line, column=col, path=dotted(path), message=message, hint=hint)


def _short(text: str) -> str:
    """A scalar as a message quotes it: long ones cut, with their length."""
    return text if len(text) <= 24 else f"{text[:12]}… ({len(text):,} characters)"


def _mark(mark: Any) -> tuple[int, int]:
    if mark is None:
        return (1, 1)
    return (mark.line + 1, mark.column + 1)


def _describe(node: Node) -> str:
    if isinstance(node, ScalarNode):
        kind = {_INT: "integer", _FLOAT: "number", _BOOL: "boolean", _NULL: "null"}.get(node.tag, "value")
        return f"{kind} {node.value!r}"
    return "a mapping" if isinstance(node, MappingNode) else "a list"
