"""PII and secret detection for ``vilms data sanitize``: one module per family of detectors.

Each layer yields :class:`Candidate` spans; :class:`Scanner` keeps the non-overlapping ones
(higher priority, then longer, wins). The libraries (Presidio's pattern recognizers,
phonenumbers, python-stdnum, detect-secrets) belong to the ``sanitize`` extra and are imported
only here, when a scanner is built; a spaCy NER pipeline is used only when installed.
"""

from .base import Candidate, Finding, Layer, RegexDetector
from .scanner import DEFAULT_REGIONS, Scanner, build_scanner, check_regions

__all__ = [
    "DEFAULT_REGIONS",
    "Candidate",
    "Finding",
    "Layer",
    "RegexDetector",
    "Scanner",
    "build_scanner",
    "check_regions",
]
