"""Secrets out of messages: a tracking URI may carry credentials (``https://user:token@host``),
OTLP headers carry tokens; an error text from a client library may quote either."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

MASK = "***"


def secrets_of_uri(uri: str) -> list[str]:
    """The parts of ``uri`` that must not be shown: its user info (user, password, both)."""
    parts = urlsplit(uri)
    found = [s for s in (parts.username, parts.password) if s]
    if "@" in parts.netloc:
        found.append(parts.netloc.rsplit("@", 1)[0])
    return found


def shown_uri(uri: str) -> str:
    """``https://user:token@host/x`` → ``https://***@host/x``."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return parts._replace(netloc=MASK + "@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (longest first, so a secret containing another goes whole) masked."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
