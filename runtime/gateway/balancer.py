"""Endpoint selection for one backend: round-robin or least in-flight, with cooldowns.

Endpoint state (in-flight count, cooldown) lives in :class:`EndpointPool`, shared across
routing-table reloads, so a reload neither forgets a failing endpoint nor miscounts
requests still in flight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class Endpoint:
    url: str
    inflight: int = 0
    cooldown_until: float = 0.0
    failures: int = 0

    def cooling(self, now: float) -> bool:
        return self.cooldown_until > now


@dataclass(slots=True)
class EndpointPool:
    """All endpoints the gateway knows, keyed by base URL."""

    _by_url: dict[str, Endpoint] = field(default_factory=dict)

    def get(self, url: str) -> Endpoint:
        endpoint = self._by_url.get(url)
        if endpoint is None:
            endpoint = self._by_url[url] = Endpoint(url)
        return endpoint

    def all(self) -> list[Endpoint]:
        return list(self._by_url.values())


class Balancer:
    """Picks the next endpoint of one backend, skipping cooling and already-tried ones."""

    __slots__ = ("endpoints", "strategy", "_next")

    def __init__(self, endpoints: list[Endpoint], strategy: str) -> None:
        self.endpoints = endpoints
        self.strategy = strategy
        self._next = 0

    def all_cooling(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return all(e.cooling(now) for e in self.endpoints)

    def pick(self, tried: set[str] | None = None, now: float | None = None) -> Endpoint:
        """The next endpoint to use.

        Preference: healthy and untried > healthy > cooling (the one whose cooldown ends
        first, as a probe). ``round_robin`` rotates; ``least_inflight`` takes the lowest
        in-flight count, ties broken in rotation order.
        """
        now = time.monotonic() if now is None else now
        endpoints = self.endpoints
        count = len(endpoints)
        if count == 1:
            return endpoints[0]
        start = self._next
        order = [endpoints[(start + i) % count] for i in range(count)]
        healthy = [e for e in order if not e.cooling(now)]
        fresh = [e for e in healthy if not tried or e.url not in tried]
        candidates = fresh or healthy
        if not candidates:
            return min(endpoints, key=lambda e: e.cooldown_until)
        chosen = candidates[0] if self.strategy == "round_robin" else min(candidates, key=lambda e: e.inflight)
        self._next = (endpoints.index(chosen) + 1) % count
        return chosen

    @staticmethod
    def failed(endpoint: Endpoint, cooldown_s: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        endpoint.failures += 1
        endpoint.cooldown_until = now + cooldown_s

    @staticmethod
    def succeeded(endpoint: Endpoint) -> None:
        endpoint.failures = 0
        endpoint.cooldown_until = 0.0
