"""The `release:` edit: ``adapters.<name>.release`` changed in vilms.yaml's text, every other byte kept.

vilms.yaml is edited as text, never re-dumped: the positions of the composed YAML nodes say
which characters hold ``adapters.<name>.release``; only that scalar is replaced (keeping
its quoting style), or one ``release:`` entry is inserted into the adapter's mapping (block
or flow style). Aliases, anchors, tags and block scalars are refused with a hint.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vilms.compiler.errors import ActionError
from vilms.compiler.load import compose

BY_HAND = "set adapters.{adapter}.release in vilms.yaml by hand, then run `vilms build`"


@dataclass(frozen=True)
class Edit:
    text: str
    inserted_line: int | None  # 1-based line added to the file, when release: was absent


def set_release(text: str, adapter: str, value: str | None) -> Edit:
    """``text`` with ``adapters.<adapter>.release`` set to ``value``, every other byte kept."""
    root = compose(text)
    adapters = _entry(root, "adapters")
    if adapters is None or not isinstance(adapters[1], MappingNode):
        raise ActionError("vilms.yaml has no adapters: mapping")
    found = _entry(adapters[1], adapter)
    if found is None:
        raise ActionError(f"unknown adapter {adapter!r}")
    key, mapping = found
    _own(key, mapping, f"adapters.{adapter}")
    if not isinstance(mapping, MappingNode):
        raise ActionError(f"adapters.{adapter} is not a mapping", hint=BY_HAND.format(adapter=adapter))
    release = _entry(mapping, "release")
    if release is not None:
        return Edit(_replace_scalar(text, *release, value, adapter), None)
    if mapping.flow_style:
        return _insert_flow(text, mapping, value, adapter)
    return _insert_block(text, mapping, value, adapter)


def _entry(node: Node | None, name: str) -> tuple[ScalarNode, Node] | None:
    if not isinstance(node, MappingNode):
        return None
    for key, value in node.value:
        if isinstance(key, ScalarNode) and key.value == name:
            return key, value
    return None


def _own(key: Node, value: Node, where: str) -> None:
    """Refuse a value that is an alias (``*name``): its text lives elsewhere in the file."""
    if value.start_mark.index < key.end_mark.index:
        raise ActionError(f"{where} is a YAML alias (*name); rollout will not edit the anchored original",
                          hint="write the value out in place, or edit vilms.yaml by hand")


def _replace_scalar(text: str, key: ScalarNode, node: Node, value: str | None, adapter: str) -> str:
    where = f"adapters.{adapter}.release"
    _own(key, node, where)
    start, end = node.start_mark.index, node.end_mark.index
    if not isinstance(node, ScalarNode) or node.style in ("|", ">") or node.start_mark.line != node.end_mark.line:
        raise ActionError(f"{where} is not a one-line scalar", hint=BY_HAND.format(adapter=adapter))
    if text[start:start + 1] in ("&", "!"):
        raise ActionError(f"{where} carries a YAML anchor or tag; rollout will not edit it", hint=BY_HAND.format(adapter=adapter))
    if start == end:  # `release:` with nothing after it (null)
        colon = text.index(":", key.end_mark.index)
        return text[:colon + 1] + " " + _scalar(value, None) + text[colon + 1:]
    return text[:start] + _scalar(value, node.style) + text[end:]


PLAIN_SAFE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*$")


def _scalar(value: str | None, style: str | None) -> str:
    """``value`` as YAML, in the quoting style the old value had (``null`` is always plain)."""
    if value is None:
        return "null"
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or not PLAIN_SAFE.match(value) or value.lower() in ("null", "true", "false"):
        return json.dumps(value)
    return value


def _insert_block(text: str, mapping: MappingNode, value: str | None, adapter: str) -> Edit:
    if not mapping.value:
        raise ActionError(f"adapters.{adapter} is empty", hint=BY_HAND.format(adapter=adapter))
    indent = mapping.value[0][0].start_mark.column
    leaf = _last_leaf(mapping, adapter)
    pos = leaf.end_mark.index
    if pos < mapping.value[-1][0].end_mark.index:
        raise ActionError(f"the last entry of adapters.{adapter} ends in a YAML alias; rollout cannot tell where the mapping ends",
                          hint=BY_HAND.format(adapter=adapter))
    newline = "\r\n" if "\r\n" in text else "\n"
    if leaf.end_mark.column != 0:  # the rest of the leaf's line (a trailing comment) stays with it
        eol = text.find("\n", pos)
        pos = len(text) if eol < 0 else eol + 1
    while pos < len(text):  # comment lines indented under the last entry stay with it
        eol = text.find("\n", pos)
        line = text[pos:] if eol < 0 else text[pos:eol]
        if not line.lstrip().startswith("#") or len(line) - len(line.lstrip(" ")) <= indent:
            break
        pos = len(text) if eol < 0 else eol + 1
    prefix = newline if pos == len(text) and not text.endswith("\n") else ""
    line = f"{prefix}{' ' * indent}release: {_scalar(value, None)}{newline}"
    return Edit(text[:pos] + line + text[pos:], text.count("\n", 0, pos) + 1 + (1 if prefix else 0))


def _last_leaf(node: Node, adapter: str) -> Node:
    """The node whose text ends the block collection ``node``."""
    while isinstance(node, (MappingNode, SequenceNode)) and not node.flow_style and node.value:
        if isinstance(node, MappingNode):
            key, child = node.value[-1]
            _own(key, child, f"the last entry of adapters.{adapter}")
        else:
            child = node.value[-1]
        node = child
    return node


def _insert_flow(text: str, mapping: MappingNode, value: str | None, adapter: str) -> Edit:
    entry = f"release: {_scalar(value, None)}"
    if not mapping.value:
        pos = text.index("{", mapping.start_mark.index) + 1
        return Edit(text[:pos] + entry + text[pos:], None)
    key, last = mapping.value[-1]
    _own(key, last, f"the last entry of adapters.{adapter}")
    pos = last.end_mark.index
    return Edit(text[:pos] + ", " + entry + text[pos:], None)
