"""Emails and IP addresses: patterns whose matches the standard library validates."""

from __future__ import annotations

import ipaddress
import re

from .base import RegexDetector

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
IPV4 = RegexDetector(
    "ipv4", re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)"), accept=_ip, priority=50
)
DETECTORS = (EMAIL, IPV6, IPV4)
