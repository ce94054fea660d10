"""Live gateway state: the current routing table, counters, and routes reloading.

``reload()`` (SIGHUP) and the file watcher build a complete new table first and only
then swap the reference; a broken file leaves the old table serving and is logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from vilms.compiler.errors import VilmsError

from .balancer import EndpointPool
from .metrics import GatewayMetrics
from .routes import load_routes
from .table import RoutingTable, build_table

log = logging.getLogger("vilms.gateway")


class GatewayState:
    def __init__(self, routes_file: Path, environ: Mapping[str, str] | None = None) -> None:
        self.routes_file = Path(routes_file)
        self.environ = environ
        self.pool = EndpointPool()
        self.inflight = 0
        self.draining = False
        self.metrics = GatewayMetrics(
            in_flight=lambda: [((), float(self.inflight))],
            endpoints=self.pool.all,
        )
        self._stamp = self._file_stamp()
        # Raises VilmsError for a bad file or missing keys: the gateway never starts broken.
        self.table: RoutingTable = build_table(load_routes(self.routes_file), self.pool, environ)

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.routes_file)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self) -> bool:
        """Load the routes file again; swap tables on success. Returns whether it swapped."""
        self._stamp = self._file_stamp()
        try:
            table = build_table(load_routes(self.routes_file), self.pool, self.environ, previous=self.table)
        except VilmsError as exc:
            self.metrics.reloads.inc("error")
            log.error("routes reload failed; still serving the previous routes:\n%s", exc.render())
            return False
        self.table = table
        self.metrics.reloads.inc("ok")
        log.info("routes reloaded from %s: %d aliases, %d backends", self.routes_file,
                 len(table.aliases), len(table.backends))
        return True

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
