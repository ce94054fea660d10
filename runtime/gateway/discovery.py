"""DNS discovery: a backend's endpoints are the A/AAAA records of its ``discovery.host``.

Every ``gateway.discovery_interval_s`` each backend with ``discovery`` is looked up (A and
AAAA at once, each lookup bounded by :data:`LOOKUP_TIMEOUT_S`) with dnspython's async
resolver, which reads ``/etc/resolv.conf`` (nameservers, search domains, ndots) as a pod
does; ``VILMS_GATEWAY_NAMESERVER=host:port`` replaces the nameserver. Each record becomes
``scheme://ip:port`` (IPv6 in brackets), sorted, at most :data:`MAX_ENDPOINTS`.

Until the first lookup answers, the static ``endpoints`` serve. A lookup that fails (timeout,
SERVFAIL, NXDOMAIN, a CNAME chain too long) or answers no address keeps the last good set,
is logged and counted: DNS trouble never takes endpoints away. TTLs are ignored (the
interval decides), and no answer is cached between lookups.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping

import dns.asyncresolver
import dns.exception
import dns.resolver

from vilms.compiler.errors import ActionError

from .metrics import GatewayMetrics
from .table import BackendRoute, RoutingTable

log = logging.getLogger("vilms.gateway")

NAMESERVER_ENV = "VILMS_GATEWAY_NAMESERVER"
MAX_ENDPOINTS = 256  # records past this (sorted) are not used: a hostile or broken answer stays bounded
LOOKUP_TIMEOUT_S = 2.0  # per lookup, and never more than the interval


class LookupFailed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # timeout | nxdomain | servfail | empty | error


def make_resolver(environ: Mapping[str, str]) -> dns.asyncresolver.Resolver:
    """The system resolver (``/etc/resolv.conf``), its nameserver replaced by ``VILMS_GATEWAY_NAMESERVER``."""
    override = environ.get(NAMESERVER_ENV, "").strip()
    server = _nameserver(override) if override else None
    try:
        resolver = dns.asyncresolver.Resolver()
    except (dns.resolver.NoResolverConfiguration, OSError):
        resolver = dns.asyncresolver.Resolver(configure=False)
    if server is not None:
        resolver.nameservers = [server[0]]
        resolver.port = server[1]
    resolver.cache = None
    return resolver


def _nameserver(value: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT``."""
    host, port_text = value, ""
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            host = ""
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    try:
        ipaddress.ip_address(host)
        port = int(port_text) if port_text else 53
        if not 0 < port < 65536:
            raise ValueError(port)
    except ValueError:
        raise ActionError(f"{NAMESERVER_ENV}={value!r} is not a nameserver address",
                          hint=f"set {NAMESERVER_ENV}=IP:PORT, e.g. 10.96.0.10:53 or [fd00::a]:53") from None
    return host, port


async def lookup(resolver: dns.asyncresolver.Resolver, host: str, timeout: float) -> list[str]:
    """The addresses of ``host`` (A and AAAA); raises :class:`LookupFailed` unless both lookups
    answered (an empty answer for one family is fine) and at least one address came back."""
    try:
        async with asyncio.timeout(timeout * 2):  # dnspython bounds each lookup; this bounds it all
            families = await asyncio.gather(_query(resolver, host, "A", timeout),
                                            _query(resolver, host, "AAAA", timeout))
    except TimeoutError:
        raise LookupFailed("timeout") from None
    addresses = sorted({a for family in families for a in family})
    if not addresses:
        raise LookupFailed("empty")
    return addresses


async def _query(resolver: dns.asyncresolver.Resolver, host: str, rdtype: str, timeout: float) -> list[str]:
    try:
        answer = await resolver.resolve(host, rdtype, search=True, lifetime=timeout, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        raise LookupFailed("nxdomain") from None
    except dns.resolver.LifetimeTimeout:
        raise LookupFailed("timeout") from None
    except dns.resolver.NoNameservers:
        raise LookupFailed("servfail") from None
    except dns.exception.DNSException:
        raise LookupFailed("error") from None
    out = []
    for record in answer.rrset or ():
        address = ipaddress.ip_address(record.address)
        if not (address.is_unspecified or address.is_multicast):
            out.append(str(address))
    return out


def endpoint_url(scheme: str, address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}:{port}"


class Discovery:
    """The lookup loop: finds each discovered backend's pods and replaces its endpoints."""

    def __init__(self, table: Callable[[], RoutingTable], metrics: GatewayMetrics,
                 resolver: dns.asyncresolver.Resolver, retain: Callable[[], None],
                 added: Callable[[str], None]) -> None:
        self._table = table
        self._metrics = metrics
        self._resolver = resolver
        self._retain = retain  # forget endpoint state of pods no backend has any more
        self._added = added  # a backend got new endpoints (the adapter reconciler loads them)
        self._failing: set[str] = set()
        self._rounds: list[asyncio.Future[None]] = []

    async def run(self) -> None:
        while True:
            table = self._table()
            try:
                await self.refresh(table)
            except Exception:  # a bug must not end discovery: the endpoints stay as they are
                log.exception("DNS discovery round failed")
            for waiter in self._rounds:
                if not waiter.done():
                    waiter.set_result(None)
            self._rounds.clear()
            await asyncio.sleep(table.settings.discovery_interval_s)

    def next_round(self) -> Awaitable[None]:
        """Resolves when the next full round of lookups has been applied."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._rounds.append(waiter)
        return waiter

    async def refresh(self, table: RoutingTable) -> None:
        timeout = min(LOOKUP_TIMEOUT_S, table.settings.discovery_interval_s)
        routes = [r for r in table.backends.values() if r.backend.discovery is not None]
        if routes:
            await asyncio.gather(*(self._refresh(route, timeout) for route in routes))

    async def _refresh(self, route: BackendRoute, timeout: float) -> None:
        discovery = route.backend.discovery
        assert discovery is not None
        bid = route.backend.id
        try:
            addresses = await lookup(self._resolver, discovery.host, timeout)
        except LookupFailed as failed:
            self._metrics.discovery_lookups.inc(bid, route.backend.engine, "error")
            self._failing.add(bid)
            log.warning("DNS lookup of %s for backend %s failed (%s); keeping its %d endpoints", discovery.host, bid,
                        failed.kind, len(route.members.all.endpoints))
            return
        self._metrics.discovery_lookups.inc(bid, route.backend.engine, "ok")
        if bid in self._failing:
            self._failing.discard(bid)
            log.info("DNS lookup of %s for backend %s answers again", discovery.host, bid)
        if len(addresses) > MAX_ENDPOINTS:
            log.warning("DNS name %s has %d addresses; backend %s uses the first %d", discovery.host,
                        len(addresses), bid, MAX_ENDPOINTS)
            addresses = addresses[:MAX_ENDPOINTS]
        urls = [endpoint_url(discovery.scheme, a, discovery.port) for a in addresses]
        added, removed = route.members.set_endpoints(urls)
        if added or removed:
            log.info("backend %s: %d endpoints from DNS (%d new, %d gone)", bid, len(urls), len(added), len(removed))
            self._retain()
        if added:
            self._added(bid)
