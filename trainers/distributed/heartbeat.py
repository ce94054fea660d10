"""Per-rank heartbeat files: which rank a timed-out collective waited for.

Each rank's background thread rewrites ``<run>/heartbeat/rank-<r>.json`` (pid, host, step,
time) every ``interval`` seconds. A rank whose collective times out reads them: a rank whose
file went stale (stopped, hung in the kernel, dead) or that is behind in steps is the one
that did not arrive. The folder is removed when the run completes.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from vilms.compiler.errors import ActionError

from ..atomic import write_json

FOLDER = "heartbeat"


def interval_for(collective_timeout_s: float) -> float:
    """Beat often enough that a stale file is unmistakable well before the timeout."""
    return max(0.2, min(5.0, collective_timeout_s / 10))


class Heartbeat:
    def __init__(self, run_dir: Path, rank: int, interval: float) -> None:
        self.folder = run_dir / FOLDER
        self.file = self.folder / f"rank-{rank}.json"
        self.rank = rank
        self.interval = interval
        self.step = 0
        self._stop = threading.Event()
        self.folder.mkdir(exist_ok=True)
        self._write()
        self._thread = threading.Thread(target=self._loop, name="vilms-heartbeat", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        write_json(self.file, {"rank": self.rank, "pid": os.getpid(), "host": socket.gethostname(),
                               "step": self.step, "time": time.time()})

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def read(run_dir: Path) -> list[dict]:
    beats = []
    for path in sorted((run_dir / FOLDER).glob("rank-*.json")):
        try:
            beats.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return beats


def laggards(beats: list[dict], world_size: int, interval: float, now: float) -> list[str]:
    """Descriptions of the ranks that did not arrive: stale, missing, or behind in steps."""
    seen = {b["rank"]: b for b in beats}
    out = [f"rank {r} (no heartbeat)" for r in range(world_size) if r not in seen]
    stale = [b for b in seen.values() if now - b["time"] > 3 * interval]
    out += [f"rank {b['rank']} (pid {b['pid']} on {b['host']}, silent for {now - b['time']:.0f}s at step {b['step']})"
            for b in sorted(stale, key=lambda b: b["rank"])]
    if not out and seen:
        ahead = max(b["step"] for b in seen.values())
        out = [f"rank {b['rank']} (pid {b['pid']} on {b['host']}, at step {b['step']} of {ahead})"
               for b in sorted(seen.values(), key=lambda b: b["rank"]) if b["step"] < ahead]
    return out


def collective_failed(exc: BaseException, run_dir: Path, rank: int, world_size: int, timeout_s: float) -> ActionError:
    """The error a rank reports when a collective failed (timed out, or a peer went away)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    found = laggards(read(run_dir), world_size, interval_for(timeout_s), time.time())
    found = [d for d in found if not d.startswith(f"rank {rank} ")]
    who = "; ".join(found) if found else "no other rank looks stuck"
    return ActionError(
        f"rank {rank}: a collective failed ({first}); did not arrive: {who}",
        hint=f"collective_timeout is {timeout_s:g}s; a slow but healthy rank needs a larger training.collective_timeout",
    )
