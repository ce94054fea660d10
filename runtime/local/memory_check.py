"""Does the deployment's memory estimate fit what this machine has free right now?

The compiler checks the estimate against the hardware profile; `vilms up` also checks it
against ``MemAvailable`` of ``/proc/meminfo`` (the kernel's estimate of what can be allocated
without swapping). When `up` applies a new build to a running deployment, what its own
servers hold now (their RSS) counts as available: they are replaced. Servers offloading to a
GPU (gpu_layers on gpu hardware) are not checked: their weights live in GPU memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vilms.compiler.errors import ActionError
from vilms.compiler.memory.estimate import Estimate, gib

MEMINFO = Path("/proc/meminfo")
PROC = Path("/proc")
KIB = 1024


def mem_available(meminfo: Path = MEMINFO) -> int | None:
    """``MemAvailable`` in bytes; None when the file does not say (not Linux, old kernel)."""
    try:
        text = meminfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key == "MemAvailable":
            parts = rest.split()
            try:
                return int(parts[0]) * (KIB if parts[1:] == ["kB"] else 1)
            except (IndexError, ValueError):
                return None
    return None


def rss(pids: Iterable[int], proc: Path = PROC) -> int:
    """Resident memory of ``pids`` together, in bytes (gone processes count 0)."""
    total = 0
    for pid in pids:
        try:
            text = (proc / str(pid) / "status").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    total += int(parts[1]) * KIB
    return total


def check_fits(estimate: Estimate, *, deployment: str, available: int | None, reclaimed: int = 0) -> None:
    """Raise :class:`ActionError` when ``estimate`` exceeds ``available`` + ``reclaimed``."""
    if available is None or not estimate.known:
        return
    free = available + reclaimed
    if estimate.total <= free:
        return
    held = f" + {gib(reclaimed)} its running servers hold" if reclaimed else ""
    raise ActionError(f"deployment {deployment} needs about {gib(estimate.total)} of memory, but this machine has "
                      f"{gib(available)} available (MemAvailable){held}",
                      hint="stop what uses memory, lower the deployment's context or parallel in vilms.yaml, "
                           "or start anyway with `vilms up --ignore-memory` (the kernel may kill a server)")
