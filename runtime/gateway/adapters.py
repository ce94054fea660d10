"""Runtime LoRA adapters on vLLM: every endpoint of a ``runtime_lora`` backend holds exactly the
released adapters its routes use.

For each endpoint, ``GET /v1/models`` says what it holds (LoRA entries have a ``parent``);
``POST /v1/load_lora_adapter {"lora_name": <route model>, "lora_path": <adapter path>}``
loads what is missing (vLLM's 400 "has already been loaded" counts as loaded), and
``POST /v1/unload_lora_adapter {"lora_name": ...}`` removes adapters this gateway's routes
used before and no route uses now (a 404 counts as gone). Adapters the gateway never routed
to (``--lora-modules``, loaded by hand) are left alone.

A pass runs at start, every ``discovery_interval_s``, when discovery finds new endpoints,
when an engine answers 404 for an adapter it should hold (it restarted), and after every
routes reload. A reload that brings new adapters is swapped in only after a pass has loaded
them on every endpoint it could reach (make-before-break), and retired adapters are unloaded
after the swap. Requests for an adapter go only to endpoints that confirmed it
(:meth:`.membership.BackendMembers.adapter`). Every call has a timeout and a bounded read;
engine error text goes to the log, shortened, never to clients.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import orjson

from .balancer import Endpoint
from .metrics import GatewayMetrics
from .table import BackendRoute, RoutingTable, runtime_adapters
from .upstream.httpclient import Pool, TooLarge, UpstreamError

log = logging.getLogger("vilms.gateway")

CALL_TIMEOUT_S = 10.0  # listing and unloading
LOAD_TIMEOUT_S = 120.0  # loading reads the adapter's weights
MODELS_LIMIT = 1 << 20  # bytes of a /v1/models answer
ANSWER_LIMIT = 64 * 1024  # bytes of a load/unload answer
PARALLEL = 16  # endpoints reconciled at once


class ControlError(Exception):
    """A control call failed; the message is for the log."""


class AdapterReconciler:
    def __init__(self, table: Callable[[], RoutingTable], metrics: GatewayMetrics) -> None:
        self._table = table
        self._metrics = metrics
        self._pool = Pool()  # control calls use their own connections, apart from traffic
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._retired: dict[str, set[str]] = {}  # per backend: names to unload where present
        self._passes: list[asyncio.Future[None]] = []
        self.running = False

    def kick(self) -> None:
        """Run a pass soon (new endpoints, an adapter an engine lost)."""
        self._kick.set()

    async def run(self) -> None:
        self.running = True
        try:
            while True:
                self._kick.clear()
                try:
                    await self.reconcile()
                except Exception:  # a bug must not end the reconciler: the next pass tries again
                    log.exception("adapter reconcile pass failed")
                for waiter in self._passes:
                    if not waiter.done():
                        waiter.set_result(None)
                self._passes.clear()
                try:
                    async with asyncio.timeout(self._table().settings.discovery_interval_s):
                        await self._kick.wait()
                except TimeoutError:
                    pass
        finally:
            self.running = False

    def next_pass(self) -> asyncio.Future[None]:
        """Resolves when the next full pass of the loop has finished."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._passes.append(waiter)
        return waiter

    def close(self) -> None:
        self._pool.close()

    def unready(self, table: RoutingTable) -> bool:
        """Whether some adapter of ``table`` is not yet confirmed on every endpoint of its backend."""
        for route in table.backends.values():
            everyone = len(route.members.all.endpoints)
            for balancer in route.lora.values():
                if len(balancer.endpoints) < everyone:
                    return True
        return False

    def swapped(self, old: RoutingTable, new: RoutingTable) -> None:
        """``new`` serves from now on: what only ``old`` used is retired (unloaded by the next pass)."""
        before, after = runtime_adapters(old.routes), runtime_adapters(new.routes)
        for bid in set(before) | set(after) | set(self._retired):
            retired = self._retired.setdefault(bid, set())
            retired |= set(before.get(bid, ())) - set(after.get(bid, ()))
            retired -= set(after.get(bid, ()))  # a rollback brings a retired name back
        self.kick()

    async def reconcile(self, table: RoutingTable | None = None, unload: bool = True) -> None:
        """One pass over every endpoint of every ``runtime_lora`` backend of ``table`` (default: the
        one serving). Without ``unload`` only loads (before a table with new adapters is swapped in)."""
        async with self._lock:
            table = self._table() if table is None else table
            wanted = runtime_adapters(table.routes)
            limit = asyncio.Semaphore(PARALLEL)
            jobs = []
            for bid, route in table.backends.items():
                if not route.backend.runtime_lora:
                    continue
                want = wanted.get(bid, {})
                retire = (self._retired.get(bid, set()) - set(want)) if unload else set()
                for endpoint in route.members.all.endpoints:
                    jobs.append(self._bounded(limit, table, route, endpoint, want, retire))
            results = await asyncio.gather(*jobs)
            if unload:
                for bid, retired in self._retired.items():
                    route = table.backends.get(bid)
                    count = len(route.members.all.endpoints) if route is not None else 0
                    # a name is forgotten once every endpoint has let it go (or the backend is gone)
                    retired -= {n for n in retired
                                if count == 0 or sum(1 for b, gone in results if b == bid and n in gone) >= count}

    async def _bounded(self, limit: asyncio.Semaphore, table: RoutingTable, route: BackendRoute, endpoint: Endpoint,
                       want: Mapping[str, str | None], retire: set[str]) -> tuple[str, set[str]]:
        async with limit:
            return route.backend.id, await self._sync(table, route, endpoint, want, retire)

    async def _sync(self, table: RoutingTable, route: BackendRoute, endpoint: Endpoint,
                    want: Mapping[str, str | None], retire: set[str]) -> set[str]:
        """Make one endpoint hold ``want``; returns the retired names it no longer holds."""
        bid, members = route.backend.id, route.members
        try:
            present = await self._list(table, route, endpoint)
        except ControlError as exc:
            log.warning("adapters: cannot list what %s of backend %s holds: %s", endpoint.label, bid, exc)
            return set()
        held = frozenset(present)
        members.confirm(endpoint.url, held)  # an engine that restarted stops getting adapter requests now
        for name, path in want.items():
            if name in held:
                continue
            if path is None:
                log.error("adapters: %s of backend %s does not hold adapter %s and its routes give no path to "
                          "load it from", endpoint.label, bid, name)
                continue
            if await self._change(table, route, endpoint, "load", {"lora_name": name, "lora_path": path}):
                held |= {name}
                members.confirm(endpoint.url, held)  # it takes requests for the adapter from now on
        gone = retire - held
        for name in sorted(retire & held):
            if await self._change(table, route, endpoint, "unload", {"lora_name": name}):
                held -= {name}
                members.confirm(endpoint.url, held)
                gone.add(name)
        return gone

    async def _list(self, table: RoutingTable, route: BackendRoute, endpoint: Endpoint) -> set[str]:
        settings = table.settings
        deadline = asyncio.get_running_loop().time() + CALL_TIMEOUT_S
        try:
            async with self._pool.get(endpoint.url + "/v1/models", route.headers, settings.connect_timeout_s,
                                      CALL_TIMEOUT_S, deadline) as response:
                status, raw = response.status, await response.read(MODELS_LIMIT)
        except TooLarge:
            raise ControlError(f"its model list is over {MODELS_LIMIT} bytes") from None
        except UpstreamError as exc:
            raise ControlError(f"{type(exc).__name__}: {exc}") from None
        if status != 200:
            raise ControlError(f"HTTP {status}")
        try:
            data = orjson.loads(raw).get("data")
        except (ValueError, AttributeError):
            data = None
        if not isinstance(data, list):
            raise ControlError("its model list is not a list")
        return {m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str) and m.get("parent")}

    async def _change(self, table: RoutingTable, route: BackendRoute, endpoint: Endpoint, op: str,
                      body: dict[str, str]) -> bool:
        """Load or unload one adapter on one endpoint; True when it is done (or already was)."""
        settings, bid, name = table.settings, route.backend.id, body["lora_name"]
        timeout = LOAD_TIMEOUT_S if op == "load" else CALL_TIMEOUT_S
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            async with self._pool.post(f"{endpoint.url}/v1/{op}_lora_adapter", orjson.dumps(body), route.headers,
                                       settings.connect_timeout_s, timeout, timeout, deadline) as response:
                status = response.status
                try:
                    raw = await response.read(ANSWER_LIMIT)
                except TooLarge:
                    raw = b""
        except UpstreamError as exc:
            status, raw, reason = 0, b"", f"{type(exc).__name__}: {exc}"
        else:
            reason = f"HTTP {status}: {_engine_message(raw)}"
        ok = status == 200 or (op == "load" and status == 400 and b"already" in raw) or \
            (op == "unload" and status == 404)
        self._metrics.adapter_ops.inc(bid, route.backend.engine, op, "ok" if ok else "error")
        if ok:
            log.info("adapters: %sed %s on %s of backend %s", op, name, endpoint.label, bid)
        else:
            log.warning("adapters: cannot %s %s on %s of backend %s (%s)", op, name, endpoint.label, bid, reason)
        return ok


def _engine_message(raw: bytes) -> str:
    """The engine's error message, shortened and on one line, for the log."""
    try:
        data = orjson.loads(raw)
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message") if isinstance(error, dict) else None
    except ValueError:
        message = None
    text = message if isinstance(message, str) else raw[:200].decode("utf-8", "replace")
    return text[:200].encode("unicode_escape").decode("ascii")
