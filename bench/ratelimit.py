#!/usr/bin/env python3
"""Per-key limits: the gateway's token buckets (``runtime/gateway/quota.py``) beside the
``limits`` library (``pip install limits``), the well-kept choice for Python rate limiting.

    python bench/ratelimit.py

Per request the gateway admits (rpm and tpm), builds the ``x-ratelimit-*`` values, and
charges the engine's token usage after the answer. Timed the same way with ``limits``'
moving window and sliding-window counter on its in-memory storage (hit, then window stats
for the headers; tokens charged as a hit of that cost). Also the memory one busy key holds
after a minute's traffic at 600 rpm and 1M tpm. Prints the best of 5 runs.
"""

from __future__ import annotations

import sys
import timeit
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    from limits import RateLimitItemPerMinute
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
except ImportError:
    raise SystemExit("pip install limits") from None

from vilms.runtime.gateway.quota import KeyQuota

RPM, TPM, TOKENS = 600, 1_000_000, 1_600  # a request: 1,600 tokens (1M tpm / 600 rpm)


def ours() -> tuple[object, object]:
    quota = KeyQuota.carry(None, RPM, TPM)
    clock = [0.0]

    def request() -> None:
        clock[0] += 0.1  # 600 rpm
        quota.admit(clock[0])
        quota.charge(TOKENS, clock[0])
    return request, quota


def theirs(strategy: type) -> tuple[object, object]:
    storage = MemoryStorage()
    limiter = strategy(storage)
    rpm, tpm = RateLimitItemPerMinute(RPM), RateLimitItemPerMinute(TPM)

    def request() -> None:
        limiter.hit(rpm, "ci") and limiter.test(tpm, "ci")
        limiter.get_window_stats(rpm, "ci")
        limiter.get_window_stats(tpm, "ci")
        limiter.hit(tpm, "ci", cost=TOKENS)
    return request, storage


def per_request_us(make) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(5):
        request, _ = make()
        best = min(best, timeit.timeit(request, number=600) / 600)
    return best * 1e6


def memory_kib(make) -> float:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    request, keep = make()
    for _ in range(600):  # one minute at 600 rpm
        request()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return (after - before) / 1024


def main() -> None:
    rows = [("vilms quota.py (token buckets)", ours),
            ("limits moving window", lambda: theirs(MovingWindowRateLimiter)),
            ("limits sliding-window counter", lambda: theirs(SlidingWindowCounterRateLimiter))]
    print(f"{'':34} {'per request':>12} {'memory, 1 busy key':>20}")
    for name, make in rows:
        print(f"{name:34} {per_request_us(make):9.1f} µs {memory_kib(make):17.1f} KiB")


if __name__ == "__main__":
    main()
