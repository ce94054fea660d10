"""Bounded process logs: copy-truncate rotation, as logrotate's ``copytruncate`` does.

Children write their logs with ``O_APPEND``, so a log can be emptied under them and they
keep writing at its new end; the previous content moves to ``<name>.log.1``. Lines written
between the copy and the truncation are lost (a few at most), the price of never having
to restart a process or reopen its file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

MAX_LOG_BYTES = 20 * 1024 * 1024


def rotate_if_large(path: Path, max_bytes: int = MAX_LOG_BYTES) -> bool:
    """Move ``path``'s content to ``path.1`` and empty it when it exceeds ``max_bytes``."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    shutil.copyfile(path, path.with_name(path.name + ".1"))
    os.truncate(path, 0)
    return True
