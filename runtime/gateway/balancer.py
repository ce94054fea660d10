"""Endpoint selection for one backend: round-robin or least in-flight, with outlier ejection.

An endpoint is ejected (cools down for ``cooldown_s``) after ``eject_after`` consecutive
failures, like Envoy's outlier detection; any answer that is not a failure resets the
count. Endpoint state (in-flight count, failures, cooldown) lives in :class:`EndpointPool`,
shared across routing-table reloads, so a reload neither forgets a failing endpoint nor
miscounts requests still in flight.

A balancer reads its endpoints from an :class:`EndpointSet`, whose list is replaced whole
(never changed in place) by DNS discovery and by the adapter reconciler; a pick sees one
consistent list, and an endpoint that leaves is out of the next pick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(slots=True, eq=False)
class Endpoint:
    url: str
    inflight: int = 0
    cooldown_until: float = 0.0
    failures: int = 0  # consecutive
    label: str = ""  # the URL without credentials or query, for logs and metrics
    address: str = ""  # host (server.address of the GenAI metrics)
    port: str = ""  # port, explicit or the scheme's (server.port)
    gate: asyncio.Semaphore | None = None  # the engine's request slots (llama.cpp), made on first use (proxy)

    def __post_init__(self) -> None:
        if not self.label:
            self.label = _label(self.url)
        if not self.address:
            self.address, self.port = _address(self.url)

    def cooling(self, now: float) -> bool:
        return self.cooldown_until > now


def _label(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "") + parts.path


def _address(url: str) -> tuple[str, str]:
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        return parts.hostname or "", str(port) if port else ""
    except ValueError:
        return "", ""


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

    def retain(self, endpoints: Iterable[Endpoint]) -> None:
        """Keep only ``endpoints`` (those some backend uses now). Requests still in flight keep
        their object; a pod that left and comes back under the same URL starts clean."""
        kept: dict[str, Endpoint] = {}
        for endpoint in endpoints:
            kept.setdefault(endpoint.url, endpoint)
        self._by_url = kept


class EndpointSet:
    """The endpoints a balancer chooses from; ``endpoints`` is replaced whole, never mutated."""

    __slots__ = ("endpoints",)

    def __init__(self, endpoints: list[Endpoint] | None = None) -> None:
        self.endpoints: list[Endpoint] = endpoints if endpoints is not None else []

    def urls(self) -> list[str]:
        return [e.url for e in self.endpoints]


class Balancer:
    """Picks the next endpoint of one backend, skipping cooling, already-tried and excluded ones."""

    __slots__ = ("members", "strategy", "_next")

    def __init__(self, members: EndpointSet | list[Endpoint], strategy: str) -> None:
        self.members = members if isinstance(members, EndpointSet) else EndpointSet(list(members))
        self.strategy = strategy
        self._next = 0

    @property
    def endpoints(self) -> list[Endpoint]:
        return self.members.endpoints

    def all_cooling(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        for endpoint in self.members.endpoints:  # a plain loop: this runs on every request
            if endpoint.cooldown_until <= now:
                return False
        return True

    def pick(self, tried: set[str] | None = None, now: float | None = None,
             exclude: set[str] | None = None) -> Endpoint | None:
        """The next endpoint to use, never one in ``exclude`` (None when that leaves none, or
        the set is empty: an adapter no endpoint has confirmed yet).

        Preference: healthy and untried > healthy > cooling (the one whose cooldown ends
        first, as a probe). ``round_robin`` rotates; ``least_inflight`` takes the lowest
        in-flight count, ties broken in rotation order.
        """
        endpoints = self.members.endpoints
        count = len(endpoints)
        if count == 1:
            only = endpoints[0]
            return None if exclude and only.url in exclude else only
        if not count:
            return None
        now = time.monotonic() if now is None else now
        start = self._next % count  # the list may have shrunk since the last pick
        order = [endpoints[(start + i) % count] for i in range(count)]
        if exclude:
            order = [e for e in order if e.url not in exclude]
            if not order:
                return None
        healthy = [e for e in order if not e.cooling(now)]
        fresh = [e for e in healthy if not tried or e.url not in tried]
        candidates = fresh or healthy
        if not candidates:
            return min(order, key=lambda e: e.cooldown_until)
        chosen = candidates[0] if self.strategy == "round_robin" else min(candidates, key=lambda e: e.inflight)
        self._next = (endpoints.index(chosen) + 1) % count
        return chosen

    @staticmethod
    def failed(endpoint: Endpoint, cooldown_s: float, now: float | None = None, eject_after: int = 1) -> bool:
        """Count a failure; eject the endpoint at ``eject_after`` in a row. Returns whether it is ejected."""
        endpoint.failures += 1
        if endpoint.failures < eject_after:
            return False
        now = time.monotonic() if now is None else now
        endpoint.cooldown_until = now + cooldown_s
        return True

    @staticmethod
    def succeeded(endpoint: Endpoint) -> None:
        endpoint.failures = 0
        endpoint.cooldown_until = 0.0
