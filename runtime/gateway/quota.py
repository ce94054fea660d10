"""Per-key rate limits: requests per minute and tokens per minute, a token bucket each.

Each limit keeps what its key has *used*, which drains continuously at ``limit / 60``
per second (a token bucket seen from the other side): a key may spend a whole minute's
allowance in a burst, then as fast as it refills. A request is admitted when one more
request fits (``used + 1 <= rpm``) and its tokens are not already spent (``used < tpm``);
the tokens are charged after it ends, from the engine's usage, so the last request
admitted may overshoot the token limit (as OpenAI's and LiteLLM's limiters do): the key
then waits until the excess has drained.

Per request: two subtractions and comparisons, no allocation beyond the headers.
Memory: two small objects per configured key and limit, whatever the traffic. Counters
live in this process: N gateway replicas admit up to N times the limits.
"""

from __future__ import annotations

import math

WINDOW_S = 60.0


class Usage:
    """What a key has used of one limit, as of ``stamp`` (monotonic seconds). Shared by the
    :class:`Limit` objects of successive routing tables, so a reload keeps it."""

    __slots__ = ("used", "stamp")

    def __init__(self) -> None:
        self.used = 0.0
        self.stamp = 0.0


class Limit:
    """One limit (``per_minute``) over a :class:`Usage`."""

    __slots__ = ("per_minute", "rate", "usage")

    def __init__(self, per_minute: int, usage: Usage | None = None) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / WINDOW_S  # drained per second
        self.usage = usage if usage is not None else Usage()

    def used(self, now: float) -> float:
        """Drain to ``now`` and return what is still used."""
        usage = self.usage
        used = usage.used
        if used > 0.0:
            used -= (now - usage.stamp) * self.rate
            if used < 0.0:
                used = 0.0
            usage.used = used
        usage.stamp = now
        return used


class KeyQuota:
    """A key's limits: ``requests`` (rpm) and ``tokens`` (tpm), each optional."""

    __slots__ = ("requests", "tokens")

    def __init__(self, requests: Limit | None, tokens: Limit | None) -> None:
        self.requests = requests
        self.tokens = tokens

    @classmethod
    def carry(cls, previous: KeyQuota | None, rpm: int | None, tpm: int | None) -> KeyQuota | None:
        """The quota for limits ``rpm``/``tpm``, keeping what ``previous`` (the same key in the
        routing table being replaced) has used; None when the key has no limit."""
        if not rpm and not tpm:
            return None
        old_requests = previous.requests if previous is not None else None
        old_tokens = previous.tokens if previous is not None else None
        return cls(Limit(rpm, old_requests.usage if old_requests else None) if rpm else None,
                   Limit(tpm, old_tokens.usage if old_tokens else None) if tpm else None)

    def admit(self, now: float) -> tuple[str | None, float, dict[str, str]]:
        """Try to admit one request at ``now``: ``(refused, wait_s, headers)``. ``refused`` is
        None (admitted, the request counted), ``"rpm"`` or ``"tpm"``; ``wait_s`` is how long
        until both limits admit again; ``headers`` are OpenAI's ``x-ratelimit-*``."""
        refused: str | None = None
        wait = 0.0
        headers: dict[str, str] = {}
        requests, tokens = self.requests, self.tokens
        tokens_used = 0.0
        if tokens is not None:
            tokens_used = tokens.used(now)
            if tokens_used >= tokens.per_minute:
                refused, wait = "tpm", (tokens_used - tokens.per_minute) / tokens.rate
        if requests is not None:
            used = requests.used(now)
            over = used + 1.0 - requests.per_minute
            if over > 1e-9:
                if over / requests.rate >= wait:
                    refused, wait = "rpm", over / requests.rate
            elif refused is None:
                used += 1.0
                requests.usage.used = used
            headers["x-ratelimit-limit-requests"] = str(requests.per_minute)
            headers["x-ratelimit-remaining-requests"] = str(max(0, int(requests.per_minute - used + 1e-9)))
            headers["x-ratelimit-reset-requests"] = duration(used / requests.rate)
        if tokens is not None:
            headers["x-ratelimit-limit-tokens"] = str(tokens.per_minute)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, int(tokens.per_minute - tokens_used)))
            headers["x-ratelimit-reset-tokens"] = duration(tokens_used / tokens.rate)
        return refused, wait, headers

    def charge(self, spent: int, now: float) -> None:
        """Add ``spent`` tokens (prompt + completion of a finished request)."""
        tokens = self.tokens
        if tokens is not None and spent > 0:
            tokens.usage.used = tokens.used(now) + spent


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``250ms``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1.0:
        ms = math.ceil(seconds * 1000.0)
        return f"{ms}ms" if ms else "0s"
    if seconds < 60.0:
        return _seconds(seconds)
    minutes, rest = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{_seconds(rest)}"


def _seconds(seconds: float) -> str:
    text = f"{math.ceil(seconds * 1000.0) / 1000.0:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def retry_after(wait_s: float) -> dict[str, str]:
    """``Retry-After`` (whole seconds, rounded up: waiting that long is always enough) and
    ``retry-after-ms`` (read first by OpenAI's SDKs)."""
    return {"Retry-After": str(max(1, math.ceil(wait_s))), "retry-after-ms": str(max(1, math.ceil(wait_s * 1000.0)))}
