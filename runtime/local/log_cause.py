"""The one line of a server's log that says why it did not start.

A llama.cpp server that cannot load its model writes ~100 lines (llama.cpp's loader, then,
for llama-cpp-python's server, a Python traceback). `vilms up` shows the line that names the
cause, from the last start in the log (after the supervisor's last ``--- vilms …: starting``
mark): llama.cpp's own error (``error loading model: …``, ``gguf_init_from_file…``), else
its ``failed to load model``, else a Python exception's last line, else the last line.
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

TAIL_BYTES = 256 * 1024  # the end of the log is read, never all of it
MARK = "--- vilms "
START_MARK = re.compile(r"^--- vilms \S+: starting ")
LLAMA_ERROR = re.compile(r"error loading model|gguf_init_from_file|llama_model_load:.*error|\berror: ", re.IGNORECASE)
FAILED_LOAD = re.compile(r"failed to load model", re.IGNORECASE)
EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b(: .*)?$")
MAX_CHARS = 300


def last_start(path: Path) -> list[str]:
    """Lines of the log's last start (the end of the file, bounded)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines: deque[str] = deque()
    for line in text.splitlines():
        if START_MARK.match(line):
            lines.clear()
        lines.append(line.rstrip())
    return list(lines)


def cause(path: Path) -> str | None:
    """The line of ``path`` that says why its process stopped, None for an empty log."""
    lines = [line for line in last_start(path) if line.strip() and not line.startswith(MARK)]
    if not lines:
        return None
    for pattern in (LLAMA_ERROR, FAILED_LOAD):
        found = [line for line in lines if pattern.search(line) and not line.startswith(" ")]
        if found:
            return _short(found[0])
    exceptions = [line for line in lines if EXCEPTION.match(line)]
    return _short(exceptions[-1] if exceptions else lines[-1])


def _short(line: str) -> str:
    line = line.strip()
    return line if len(line) <= MAX_CHARS else line[:MAX_CHARS - 1] + "…"
