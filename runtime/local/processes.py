"""Child processes: started in their own process group, tied to the supervisor's life.

Each child leads a new session (so a Ctrl-C meant for a foreground `vilms up` reaches only
the supervisor, which then stops the children in order) and, on Linux, asks the kernel
for SIGKILL when the supervisor dies (``prctl(PR_SET_PDEATHSIG)``), so no llama.cpp
server outlives it even after a ``kill -9``. A pid is identified together with its start
time (``/proc/<pid>/stat``), so a pid reused after a reboot is never signalled.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


def _prctl():  # type: ignore[no-untyped-def]
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # resolved before any fork: the child only calls it


def spawn(argv: Sequence[str], *, log: IO[bytes], env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log``; its own session and group."""
    parent = os.getpid()

    def tie_to_parent() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
            if os.getppid() != parent:  # the supervisor died before the prctl took effect
                os._exit(1)

    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
                            preexec_fn=tie_to_parent)


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):  # a zombie has exited; only its exit status remains
        return None
    return int(fields[19])


def alive(pid: int | None, ticks: int | None = None) -> bool:
    """True when ``pid`` runs (and, given ``ticks``, is the same process that was recorded)."""
    if not pid:
        return False
    if Path("/proc/self/stat").exists():
        now = start_ticks(pid)
        return now is not None and (ticks is None or now == ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group ``pid`` leads (each child leads its own)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: subprocess.Popen[bytes], grace_s: float) -> int | None:
    """SIGTERM the child's group, wait up to ``grace_s``, then SIGKILL; reap it. Returns its exit code."""
    if proc.poll() is None:
        signal_group(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)  # not reaped yet, so the group id is still its own
    return proc.wait()


def wait_gone(pids: Sequence[tuple[int, int | None]], timeout_s: float) -> bool:
    """Wait until none of ``(pid, ticks)`` runs; True when they are all gone."""
    deadline = time.monotonic() + timeout_s
    while any(alive(pid, ticks) for pid, ticks in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
