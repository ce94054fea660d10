"""Run the gateway: ``run(routes_file, host, port)`` blocks until SIGTERM/SIGINT.

Signals: SIGTERM/SIGINT drain (stop accepting, let in-flight requests finish for up to
``SHUTDOWN_GRACE_S``; shortly before that, requests still waiting on an engine are cut:
streams end with an SSE error event, others get a 503), SIGHUP reloads the routes. The routes file is also polled for
changes every ``WATCH_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path

from vilms.compiler.errors import ActionError
from vilms.compiler.facts import gateway as gateway_facts
from vilms.runtime.logs import log_to_stderr

from .app import App
from .httpserver import Server
from .metrics_export import MetricsExport
from .state import GatewayState
from .telemetry import Telemetry

log = logging.getLogger("vilms.gateway")

SHUTDOWN_GRACE_S = 30.0
WATCH_INTERVAL_S = 1.0


def run(routes_file: Path, host: str = "127.0.0.1", port: int = gateway_facts.PORT) -> None:
    """Serve until SIGTERM/SIGINT. Raises :class:`VilmsError` before binding if the routes are bad."""
    log_to_stderr("vilms.gateway")
    state = GatewayState(Path(routes_file))  # validates and resolves keys; raises before anything binds
    # Requests free their objects by reference counting; cycle collection can run rarely.
    # Measured: ~15 % less CPU per proxied request, no visible RSS change.
    gc.freeze()
    gc.set_threshold(20000, 20, 100)
    loop_runner = _loop_runner()
    loop_runner(serve(state, host, port))


async def serve(state: GatewayState, host: str, port: int, *, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None, watch_interval_s: float = WATCH_INTERVAL_S,
                install_signals: bool = True) -> None:
    """Serve ``state`` on host:port until ``stop`` is set (or a stop signal arrives)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    app = App(state, Telemetry.from_settings(state.table.settings.telemetry))
    server = app.server()
    try:
        await server.start(host, port)
    except OSError as exc:
        app.close()
        raise ActionError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                          hint="pick another --port, or stop what is using this one") from None
    installed = _install_signals(loop, stop, state) if install_signals else []
    background = state.start(watch_interval_s)  # routes watcher, DNS discovery, adapter reconciler
    export = MetricsExport.from_settings(state.table.settings.telemetry, state.metrics, state.environ)
    if export is not None:
        background.append(asyncio.create_task(export.run()))
    table = state.table
    log.info("vilms gateway serving deployment %s on http://%s:%d (%d aliases, auth %s)",
             table.routes.deployment, host, port, len(table.aliases), "on" if table.keys.enabled else "off")
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        state.draining = True
        for task in background:
            task.cancel()
        log.info("draining: waiting up to %.0f s for %d in-flight requests", SHUTDOWN_GRACE_S, state.inflight)
        await _drain(server, app)
        if export is not None:
            await export.close()  # the final export: what the drained requests added
        app.close()
        state.close()
        for sig in installed:
            loop.remove_signal_handler(sig)
        log.info("vilms gateway stopped")


async def _drain(server: Server, app: App) -> None:
    """Close the server with the grace period; before it ends, cut the upstream requests still
    in flight so their clients get a proper end (an SSE error event, a 503) instead of a cut."""
    closing = asyncio.ensure_future(server.close(SHUTDOWN_GRACE_S))
    cut_at = SHUTDOWN_GRACE_S - min(1.0, SHUTDOWN_GRACE_S / 4)
    done, _ = await asyncio.wait((closing,), timeout=cut_at)
    if not done:
        cut = app.pool.cut()
        if cut:
            log.warning("drain grace ending: cut %d upstream requests still in flight", cut)
    await closing


def _install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, state: GatewayState) -> list[int]:
    installed = []
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        loop.add_signal_handler(signal.SIGHUP, state.reload)
        installed.append(signal.SIGHUP)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        pass
    return installed


def _loop_runner():  # type: ignore[no-untyped-def]
    """uvloop when installed (faster), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


