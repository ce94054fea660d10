"""Which endpoints each backend has right now, shared by the routing tables, DNS discovery and
the adapter reconciler.

A backend's :class:`BackendMembers` hold ``all`` (its static endpoints, or the pods DNS
discovery found last) and, when the gateway loads adapters into the backend at run time, one
:class:`~.balancer.EndpointSet` per adapter name: the endpoints that confirmed holding it.
Requests for an adapter go only to that set. Members outlive a routes reload while the
backend's endpoints and discovery stay the same, so a reload keeps discovered pods and
confirmed adapters; every change replaces lists whole (readers never see one half-made).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from vilms.compiler.contracts.routes import Backend

from .balancer import Endpoint, EndpointPool, EndpointSet


class BackendMembers:
    __slots__ = ("backend_id", "key", "all", "adapters", "discovered", "_confirmed", "_pool", "_lost")

    def __init__(self, backend: Backend, pool: EndpointPool, lost: Callable[[], None]) -> None:
        self.backend_id = backend.id
        self.key = (backend.discovery, backend.endpoints)
        self.all = EndpointSet([pool.get(url) for url in backend.endpoints])
        self.adapters: dict[str, EndpointSet] = {}
        self.discovered = False  # True once a DNS lookup replaced the static endpoints
        self._confirmed: dict[str, frozenset[str]] = {}  # per endpoint URL: the adapters it holds, last seen
        self._pool = pool
        self._lost = lost

    def adapter(self, name: str) -> EndpointSet:
        """The endpoints confirmed to hold adapter ``name`` (a set that stays current)."""
        members = self.adapters.get(name)
        if members is None:
            members = self.adapters[name] = EndpointSet()
            self._refresh(name)
        return members

    def keep_adapters(self, names: Iterable[str]) -> None:
        keep = set(names)
        for name in [n for n in self.adapters if n not in keep]:
            del self.adapters[name]

    def confirmed(self, url: str) -> frozenset[str]:
        return self._confirmed.get(url, frozenset())

    def set_endpoints(self, urls: list[str]) -> tuple[list[str], list[str]]:
        """Replace ``all`` with ``urls`` (DNS discovery). Returns (added, removed) URLs. A removed
        endpoint leaves every set at once and forgets what it held."""
        self.discovered = True
        old = {e.url for e in self.all.endpoints}
        new = set(urls)
        added = [u for u in urls if u not in old]
        removed = sorted(old - new)
        if not added and not removed:
            return added, removed
        self.all.endpoints = [self._pool.get(url) for url in urls]
        for url in removed:
            self._confirmed.pop(url, None)
        for name in self.adapters:
            self._refresh(name)
        return added, removed

    def confirm(self, url: str, names: frozenset[str]) -> None:
        """Record what the endpoint at ``url`` holds (from the reconciler), if it is still a member.
        Only names some table routes to are kept (an engine's list is not trusted to be small)."""
        if url not in {e.url for e in self.all.endpoints}:
            return  # it left while its answer was on the way: remember nothing about it
        names = frozenset(n for n in names if n in self.adapters)
        before = self._confirmed.get(url, frozenset())
        if names == before:
            return
        self._confirmed[url] = names
        for name in self.adapters:
            if (name in names) != (name in before):
                self._refresh(name)

    def lost(self, endpoint: Endpoint, name: str) -> None:
        """The engine at ``endpoint`` answered that it does not know adapter ``name`` (it restarted):
        stop sending it requests for the adapter and have the reconciler load it again."""
        held = self._confirmed.get(endpoint.url, frozenset())
        if name in held:
            self.confirm(endpoint.url, held - {name})
        self._lost()

    def _refresh(self, name: str) -> None:
        self.adapters[name].endpoints = [e for e in self.all.endpoints if name in self._confirmed.get(e.url, ())]


class Membership:
    """The members of every backend of the table being served, by backend id."""

    def __init__(self, pool: EndpointPool) -> None:
        self.pool = pool
        self.current: dict[str, BackendMembers] = {}
        self.on_lost: Callable[[], None] = _nothing  # set by the adapter reconciler: wake it up
        # set by the gateway state: drop the metric series of endpoints no backend has any more
        self.on_retained: Callable[[list[Endpoint]], None] = lambda endpoints: None

    def members_for(self, backend: Backend) -> BackendMembers:
        """The current members when the backend's endpoints and discovery are unchanged, else new ones."""
        members = self.current.get(backend.id)
        if members is not None and members.key == (backend.discovery, backend.endpoints):
            return members
        return BackendMembers(backend, self.pool, lambda: self.on_lost())

    def adopt(self, members: Mapping[str, BackendMembers], adapters: Mapping[str, Iterable[str]]) -> None:
        """Serve these members from now on (a table was swapped in); ``adapters``: per backend, the
        adapter names its routes use."""
        self.current = dict(members)
        for bid, backend in self.current.items():
            backend.keep_adapters(adapters.get(bid, ()))
        self.retain()

    def retain(self) -> None:
        self.pool.retain(e for members in self.current.values() for e in members.all.endpoints)
        self.on_retained(self.pool.all())


def _nothing() -> None:
    return None
