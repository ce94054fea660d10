"""Emails and IP addresses: patterns whose matches the standard library validates."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from .base import Candidate, RegexDetector

_E = r"(?![A-Za-z0-9_])"


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


EMAIL = RegexDetector(
    "email",
    re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}" + _E),
    priority=80,
)
IPV6 = RegexDetector(
    "ipv6",
    re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"),
    accept=lambda s: s.count(":") >= 2 and _ip(s),
    priority=50,
)
_VERSION_BEFORE = re.compile(r"(?i:\bv|\bver\.?\s?|\b(?:version|release|firmware|build)\s)$")


class _Ipv4:
    """IPv4 addresses, but not a four-part version number ("firmware 2.1.0.5", "v1.2.3.4")."""

    pattern = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")

    def __call__(self, text: str) -> Iterator[Candidate]:
        for match in self.pattern.finditer(text):
            start = match.start()
            if _ip(match.group()) and not _VERSION_BEFORE.search(text, max(0, start - 9), start):
                yield Candidate(50, start, match.end(), "ipv4")


IPV4 = _Ipv4()
DETECTORS = (EMAIL, IPV6, IPV4)
