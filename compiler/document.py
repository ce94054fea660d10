"""A loaded vilms.yaml: plain data plus the source position of every key and value."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """Plain data (dicts, lists, str, int, float, bool, None) and where each piece came from."""

    display_name: str  # how diagnostics name the file, e.g. "vilms.yaml"
    file: Path  # absolute path of the file
    data: Any
    value_positions: dict[Path_, tuple[int, int]]  # 1-based (line, column) of each value
    key_positions: dict[Path_, tuple[int, int]]  # 1-based (line, column) of each mapping key
    sha256: str  # of the raw bytes

    @property
    def root(self) -> Path:
        """Folder of the file: relative paths in it, and generated/, live here."""
        return self.file.parent

    def locate(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """Best known position for ``path``: the key (or value) itself, else its nearest parent."""
        path = tuple(path)
        table = self.key_positions if key else self.value_positions
        if path in table:
            return table[path]
        while path:
            if path in self.key_positions:
                return self.key_positions[path]
            path = path[:-1]
            if path in self.value_positions:
                return self.value_positions[path]
        return self.value_positions.get((), (1, 1))


def dotted(path: Path_) -> str:
    """``('adapters', 'support', 'lora', 'r')`` → ``adapters.support.lora.r``; list items as ``[3]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
