"""Live gateway state: the current routing table, counters, and routes reloading.

``reload()`` (SIGHUP) and the file watcher build a complete new table first and only
then swap the reference; a broken file leaves the old table serving and is logged. A table
that brings runtime adapters not yet on every endpoint is swapped in once the adapter
reconciler has loaded them (:mod:`.adapters`); a newer reload replaces a pending one.
:meth:`start` runs the background work: the file watcher, DNS discovery, the reconciler.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from vilms.compiler.errors import VilmsError

from .adapters import AdapterReconciler
from .balancer import EndpointPool
from .discovery import Discovery, make_resolver
from .membership import Membership
from .metrics import GatewayMetrics
from .routes import load_routes
from .table import RoutingTable, build_table, runtime_adapters

log = logging.getLogger("vilms.gateway")


class GatewayState:
    def __init__(self, routes_file: Path, environ: Mapping[str, str] | None = None) -> None:
        self.routes_file = Path(routes_file)
        self.environ = environ
        self.pool = EndpointPool()
        self.membership = Membership(self.pool)
        self.inflight = 0
        self.draining = False
        self.metrics = GatewayMetrics(
            in_flight=lambda: [((), float(self.inflight))],
            endpoints=self.pool.all,
            backend_endpoints=lambda: [((bid, r.backend.engine), float(len(r.members.all.endpoints)))
                                       for bid, r in self.table.backends.items()],
            adapter_endpoints=lambda: [((bid, r.backend.engine, name), float(len(b.endpoints)))
                                       for bid, r in self.table.backends.items() for name, b in r.lora.items()],
        )
        self.membership.on_retained = self.metrics.forget_endpoints
        self._stamp = self._file_stamp()
        # Raises VilmsError for a bad file or missing keys: the gateway never starts broken.
        self.table: RoutingTable = build_table(load_routes(self.routes_file), self.pool, environ,
                                               membership=self.membership)
        self._adopt(self.table)
        self.adapters = AdapterReconciler(lambda: self.table, self.metrics)
        self.membership.on_lost = self.adapters.kick
        self.discovery = Discovery(lambda: self.table, self.metrics, make_resolver(os.environ if environ is None
                                                                                   else environ),
                                   self.membership.retain, lambda bid: self.adapters.kick())
        self.pending: asyncio.Task[None] | None = None  # a reload waiting for its adapters to load

    def start(self, watch_interval_s: float) -> list[asyncio.Task[None]]:
        """Start the background tasks (cancel them to stop)."""
        return [asyncio.create_task(self.watch(watch_interval_s)), asyncio.create_task(self.discovery.run()),
                asyncio.create_task(self.adapters.run())]

    def close(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
        self.adapters.close()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.routes_file)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self) -> bool:
        """Load the routes file again; swap tables on success (once its new runtime adapters are
        loaded: see :attr:`pending`). Returns whether the new routes were accepted."""
        self._stamp = self._file_stamp()
        try:
            table = build_table(load_routes(self.routes_file), self.pool, self.environ, previous=self.table,
                                membership=self.membership)
        except VilmsError as exc:
            self.metrics.reloads.inc("error")
            log.error("routes reload failed; still serving the previous routes:\n%s", exc.render())
            return False
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        if self.adapters.running and self.adapters.unready(table):
            log.info("routes reloaded from %s: loading new adapters on every endpoint before switching",
                     self.routes_file)
            self.pending = asyncio.get_running_loop().create_task(self._load_then_swap(table))
            return True
        self._swap(table)
        return True

    async def _load_then_swap(self, table: RoutingTable) -> None:
        try:
            await self.adapters.reconcile(table, unload=False)  # make before break
        except Exception:  # the new routes go live anyway: their adapters load on later passes
            log.exception("loading the new routes' adapters failed")
        self.pending = None
        self._swap(table)

    def _swap(self, table: RoutingTable) -> None:
        old, self.table = self.table, table
        self._adopt(table)
        self.adapters.swapped(old, table)
        self.metrics.reloads.inc("ok")
        log.info("routes reloaded from %s: %d aliases, %d backends", self.routes_file,
                 len(table.aliases), len(table.backends))

    def _adopt(self, table: RoutingTable) -> None:
        self.membership.adopt({bid: r.members for bid, r in table.backends.items()}, runtime_adapters(table.routes))

    def changed_on_disk(self) -> bool:
        """True when the file exists and differs from the one last loaded. A file that is
        momentarily absent (``vilms build`` swapping ``generated/``) is not a change."""
        stamp = self._file_stamp()
        return stamp is not None and stamp != self._stamp

    async def watch(self, interval_s: float = 1.0) -> None:
        """Poll the routes file's mtime/size/inode and reload when it changes."""
        while True:
            await asyncio.sleep(interval_s)
            if self.changed_on_disk():
                self.reload()
