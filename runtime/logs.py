"""One way the runtime programs log: timestamped lines on stderr, under their own logger."""

from __future__ import annotations

import logging
import sys


def log_to_stderr(name: str, fmt: str = "%(asctime)s %(levelname)s %(name)s %(message)s") -> None:
    """Send logger ``name`` (and its children) to stderr at INFO, once; it does not propagate."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(fmt))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
