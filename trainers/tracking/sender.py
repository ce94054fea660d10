"""A background sender: the training loop hands metrics over and never waits for the network.

Items wait in a bounded buffer; one daemon thread delivers them in batches, in order. A failed
delivery keeps the batch and tries again after a pause (the tracking server may come back);
the first failure calls ``on_down`` once and the first success after it ``on_up``. A batch the
receiver refuses (:class:`Rejected`) is not retried: it is spilled and ``on_rejected`` called. What cannot
be held (the buffer is full) or was never delivered (:meth:`Sender.close` ran out of time) is
appended to ``spill`` as JSON lines, so nothing is lost.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class Rejected(Exception):
    """The receiver answered and refused the batch (a 4xx): sending it again cannot help."""


CAPACITY = 100_000  # items held in memory; beyond it they go to the spill file
RETRY_S = (0.5, 1.0, 2.0)  # pauses after the 1st, 2nd, ... failed delivery in a row (then the last)


class Sender:
    def __init__(
        self,
        deliver: Callable[[Sequence[Any]], None],
        spill: Path,
        *,
        batch: int = 1000,
        capacity: int = CAPACITY,
        on_down: Callable[[BaseException], None] = lambda exc: None,
        on_up: Callable[[int], None] = lambda sent: None,
        on_rejected: Callable[[Rejected], None] = lambda exc: None,
        retry_s: Sequence[float] = RETRY_S,
    ) -> None:
        self._deliver = deliver
        self.spill = spill
        self._batch = batch
        self._capacity = capacity
        self._on_down, self._on_up, self._on_rejected = on_down, on_up, on_rejected
        self.rejected = 0
        self._retry_s = tuple(retry_s)
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self._closing = False  # close() called: deliver what is left, then end
        self._stop = False  # close() gave up: end after the delivery under way
        self._failures = 0  # failed deliveries in a row
        self.sent = 0
        self.spilled = 0
        self.down = False
        self._thread = threading.Thread(target=self._loop, name="vilms-tracking-sender", daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[Any]) -> None:
        """Queue ``items``; never blocks on the network."""
        with self._cond:
            room = max(self._capacity - len(self._items), 0)
            self._items.extend(items[:room])
            overflow = list(items[room:])
            self._cond.notify()
        if overflow:
            self._write_spill(overflow)

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self, timeout_s: float, grace_s: float = 15.0, down_timeout_s: float = 5.0) -> int:
        """Deliver what is queued within ``timeout_s`` (``down_timeout_s`` while the receiver is down; a
        delivery under way gets ``grace_s`` more to end); spill the rest. Returns how many items were
        spilled in this sender's life (0: all delivered)."""
        began = time.monotonic()
        deadline = began + timeout_s
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while (self._items and time.monotonic() < deadline and self._thread.is_alive()
                   and not (self.down and time.monotonic() > began + down_timeout_s)):
                self._cond.wait(timeout=max(min(deadline - time.monotonic(), 0.1), 0.0))
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=grace_s)  # only removes what it delivered: no item is both sent and spilled
        with self._cond:
            left = list(self._items)
            self._items.clear()
        if left:
            self._write_spill(left)
        return self.spilled

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closing:
                    self._cond.wait()
                if not self._items or self._stop:
                    self._cond.notify_all()
                    return
                batch = [self._items[i] for i in range(min(self._batch, len(self._items)))]
            try:
                self._deliver(batch)
            except Rejected as exc:
                with self._cond:
                    for _ in range(min(len(batch), len(self._items))):
                        self._items.popleft()
                    self._cond.notify_all()
                self._write_spill(batch)
                self.rejected += len(batch)
                if self.rejected == len(batch):  # the first refusal only
                    self._on_rejected(exc)
                continue
            except Exception as exc:  # noqa: BLE001 — any failure: keep the batch, try again later
                self._failures += 1
                if not self.down:
                    self.down = True
                    self._on_down(exc)
                pause = self._retry_s[min(self._failures - 1, len(self._retry_s) - 1)]
                with self._cond:
                    if not self._stop:
                        self._cond.wait(timeout=pause)
                continue
            with self._cond:
                for _ in range(min(len(batch), len(self._items))):
                    self._items.popleft()
                self.sent += len(batch)
                self._cond.notify_all()
            self._failures = 0
            if self.down:
                self.down = False
                self._on_up(self.sent)

    def _write_spill(self, items: Sequence[Any]) -> None:
        self.spill.parent.mkdir(parents=True, exist_ok=True)
        with self.spill.open("a", encoding="utf-8") as out:
            for item in items:
                out.write(json.dumps(item, sort_keys=True) + "\n")
        self.spilled += len(items)


def read_spill(path: Path) -> list[Any]:
    """Items a previous session could not deliver (a torn last line, from a killed process, is skipped)."""
    if not path.exists():
        return []
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return items
