"""Credentials: detect-secrets' token patterns plus the forms it does not cover.

detect-secrets' regex plugins (AWS, GitHub, GitLab, Slack, Stripe, Twilio, SendGrid, npm,
PyPI, ... tokens) are used for their patterns only — its line-oriented scanner reports values,
not positions. Private-key blocks, JWTs, newer OpenAI keys, credentials in URLs,
``password=``-style assignments and high-entropy strings are ViLMS's own patterns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from .base import Candidate, RegexDetector

_B = r"(?<![A-Za-z0-9_-])"  # a token start: no match begins inside "sk-sk-sk-…" (linear time)
_E = r"(?![A-Za-z0-9_])"

# detect-secrets plugins whose job another detector does with a precise span
_SKIPPED = {
    "BasicAuthDetector",  # → url_credentials
    "IPPublicDetector",  # → ipv4
    "JwtTokenDetector",  # → jwt (its pattern is validated by decoding, which the plugin does per line)
    "PrivateKeyDetector",  # → private_key (it matches the BEGIN line only)
}
_KIND = {  # detect-secrets' secret_type → the kind in the audit (names ViLMS used before)
    "AWS Access Key": "aws_access_key",
    "GitHub Token": "github_token",
    "Slack Token": "slack_token",
    "OpenAI Token": "openai_key",
}


def shannon_entropy(text: str) -> float:
    counts: dict[str, int] = {}
    for char in text:
        counts[char] = counts.get(char, 0) + 1
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def _high_entropy(text: str) -> bool:
    if re.fullmatch(r"[0-9a-fA-F-]+", text):  # hex ids / hashes / UUIDs are not secrets by themselves
        return False
    classes = sum(bool(re.search(p, text)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
    return classes >= 3 and shannon_entropy(text) >= 4.0


def _keyword_secret(text: str) -> bool:
    return len(text) >= 8 and bool(re.search(r"\d", text)) and bool(re.search(r"[A-Za-z]", text))


def _slug(secret_type: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", secret_type.lower()).strip("_")


class _UrlCredentials:
    """``scheme://user:password@host``: the user and password are redacted, the host is kept."""

    pattern = re.compile(
        r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://([^\s:/?#@\[\]\"']{1,256}):([^\s/?#@\[\]\"']{1,256})@"
    )

    def __call__(self, text: str) -> Iterator[Candidate]:
        for match in self.pattern.finditer(text):
            yield Candidate(85, match.start(1), match.end(2), "url_credentials")


_MAX_REPEAT = 256


def bounded(pattern: str) -> str:
    """``pattern`` with every unbounded ``*``/``+`` made ``{0,256}``/``{1,256}``.

    Some detect-secrets patterns (``sk-[…]*…``, ``//.+/:_authToken=``) take quadratic time on
    hostile lines such as ``sk-`` repeated; with a bound each start costs at most 256 steps.
    """
    out = []
    escaped = in_class = quantified = False  # quantified: the previous token was a quantifier
    for index, char in enumerate(pattern):
        was_quantified, quantified = quantified, False
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]" or pattern[index - 1] == "["
        elif char == "[":
            in_class = True
        elif char in "*+?}":
            quantified = True
            if char in "*+" and not was_quantified:  # not the lazy/possessive mark of a quantifier
                out.append("{0,%d}" % _MAX_REPEAT if char == "*" else "{1,%d}" % _MAX_REPEAT)
                continue
        out.append(char)
    return "".join(out)


def detect_secrets_layers() -> tuple[RegexDetector, ...]:
    """One detector per detect-secrets pattern (separate patterns keep their literal-prefix
    search: 3x faster here than one alternation of all of them)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector

    layers = []
    for secret_type, cls in sorted(get_mapping_from_secret_type_to_class().items()):
        if not issubclass(cls, RegexBasedDetector) or cls.__name__ in _SKIPPED:
            continue
        kind = _KIND.get(secret_type, _slug(secret_type))
        for pattern in cls.denylist:
            layers.append(RegexDetector(kind, re.compile(bounded(pattern.pattern), pattern.flags), priority=90))
    return tuple(layers)


# token-shaped credentials: each contains a run of 11+ of [A-Za-z0-9_-+/=] (TOKEN_GATE)
TOKEN_GATE = re.compile(r"[A-Za-z0-9_\-+/=]{11,}")
TOKENS = (
    RegexDetector("jwt", re.compile(_B + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), priority=95),
    RegexDetector(
        "github_token",
        re.compile(_B + r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})" + _E),
        priority=95,
    ),
    RegexDetector("openai_key", re.compile(_B + r"sk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}" + _E), priority=90),
    RegexDetector(  # not a base64 data: URI (an inlined image is not a credential)
        "high_entropy_secret",
        re.compile(r"(?<![A-Za-z0-9_+/=-])(?<!base64,)[A-Za-z0-9+/_=-]{24,}" + _E),
        accept=_high_entropy,
        priority=10,
    ),
)
OWN = (
    RegexDetector(
        "private_key",
        re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.S),
        priority=100,
    ),
    _UrlCredentials(),
    RegexDetector(
        "secret",
        re.compile(r"(?i:api[_-]?key|secret|token|passwd|password|pwd)[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{8,})"),
        accept=_keyword_secret,
        group=1,
        priority=70,
    ),
)
