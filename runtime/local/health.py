"""Network checks: is a port free, does a server answer its health URL."""

from __future__ import annotations

import socket
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (SO_REUSEADDR, as the servers bind, so a
    socket in TIME_WAIT from a previous run does not count as taken)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def probe(url: str, timeout_s: float = 2.0, headers: dict[str, str] | None = None) -> str | None:
    """GET ``url``: None when it answers 200, else a short reason ("HTTP 503", "connection
    refused", "timed out"). Connecting, sending and reading each time out after ``timeout_s``.
    ``headers``: a server's engine key (:mod:`.engine_key`)."""
    import httpx

    if not url.startswith("http://"):
        raise ValueError(f"health probes are plain HTTP (the local runner's servers listen without TLS): {url}")
    try:
        response = _client().get(url, timeout=timeout_s, headers=headers)
    except httpx.TimeoutException:
        return "timed out"
    except httpx.ConnectError as exc:
        return "connection refused" if _caused_by(exc, ConnectionRefusedError) else type(exc).__name__
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return None if response.status_code == 200 else f"HTTP {response.status_code}"


def lora_adapters(url: str, timeout_s: float = 2.0, headers: dict[str, str] | None = None) -> list[tuple[int, str]] | None:
    """llama-server's ``GET /lora-adapters`` (``[{"id", "path", "scale"}]``) as (id, path)
    pairs in its order; None when it does not answer 200 with that shape."""
    import httpx

    try:
        response = _client().get(url, timeout=timeout_s, headers=headers)
        body = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(body, list) or not all(isinstance(a, dict) and isinstance(a.get("id"), int)
                                             and isinstance(a.get("path"), str) for a in body):
        return None
    return [(a["id"], a["path"]) for a in body]


@cache
def _client() -> httpx.Client:
    """One client per process (building one costs ~40 ms: it loads the CA bundle; plain HTTP
    needs none). A new connection per probe, closed by the server after its answer
    (``Connection: close``: a kept-alive connection waits ~40 ms for a delayed ACK on servers
    that write headers and body apart); no proxy from the environment, no retries."""
    import httpx

    transport = httpx.HTTPTransport(verify=False, retries=0)  # plain http:// only, see probe()
    return httpx.Client(transport=transport, trust_env=False, headers={"Connection": "close"},
                        limits=httpx.Limits(max_keepalive_connections=0))


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
