"""torchrun command lines, and running one on this node as a child (no torch import here).

``vilms train --nproc-per-node N`` runs ``python -m vilms.trainers.distributed.agent`` —
torchrun's own launcher (``torch.distributed.run``) with the same arguments, which writes
the failed ranks and their errors to a summary file instead of printing a traceback.
``--standalone`` gives each run its own c10d rendezvous on a free port, so two runs on one
machine never collide.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .world import THREADS_ENV

WORKER_ARGS = ("--worker",)  # the hidden option that makes `vilms train` a torchrun worker


def worker_command(adapter: str, project_file: Path, run_id: str | None, *, resume: bool = False,
                   progress: bool = True) -> list[str]:
    """What each torchrun worker runs (after ``-m``)."""
    cmd = ["vilms", "train", adapter, *WORKER_ARGS]
    cmd += ["--run-id", run_id] if run_id else []
    cmd += ["--resume"] if resume else []
    cmd += ["-f", str(project_file)]
    cmd += [] if progress else ["--no-progress"]
    return cmd


def local_torchrun_args(nproc: int, max_restarts: int, log_dir: Path) -> list[str]:
    return ["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), "--max-restarts", str(max_restarts),
            "--log-dir", str(log_dir)]


def multinode_command(adapter: str, project_file: Path, run_id: str, *, nnodes: int, nproc: int,
                      rdzv_endpoint: str, max_restarts: int) -> str:
    """The torchrun command to run on every node of a bare-metal multi-node run."""
    args = ["torchrun", "--nnodes", str(nnodes), "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", rdzv_endpoint, "--rdzv-id", run_id, "--max-restarts", str(max_restarts),
            "-m", *worker_command(adapter, project_file, run_id, progress=False)]
    return shlex.join(args)


@dataclass(frozen=True)
class Failure:
    rank: int
    exitcode: int
    signal: str | None
    message: str


@dataclass(frozen=True)
class Outcome:
    returncode: int
    failures: tuple[Failure, ...]  # the ranks that failed in the last attempt (empty: success or a signal)
    signal: str | None  # the signal that stopped torchrun itself


def run_local(adapter: str, project_file: Path, run_id: str, *, nproc: int, max_restarts: int,
              progress: bool) -> Outcome:
    """Run the worker group on this node under torchrun; forward SIGINT/SIGTERM; wait."""
    with tempfile.TemporaryDirectory(prefix="vilms-torchrun-") as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "vilms.trainers.distributed.agent", str(summary), "--",
               *local_torchrun_args(nproc, max_restarts, Path(tmp) / "logs"),
               "-m", *worker_command(adapter, project_file, run_id, progress=progress)]
        threads = os.environ.get(THREADS_ENV) or str(max(1, (os.cpu_count() or 1) // nproc))
        # each restarted worker group gets a fresh store: with torchrun's shared store, a restarted gloo group
        # read the dead group's addresses and failed its first attempt (torch 2.13)
        env = {"OMP_NUM_THREADS": threads, **os.environ, "PYTHONUNBUFFERED": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
        proc = subprocess.Popen(cmd, env=env)
        forwarded: list[int] = []

        def forward(signum: int, frame: object) -> None:
            forwarded.append(signum)
            proc.send_signal(signal.SIGTERM)  # torchrun stops its workers on SIGTERM; they checkpoint

        old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            returncode = proc.wait()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        data = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else {}
    failures = tuple(Failure(**f) for f in data.get("failures", ()))
    stopped_by = data.get("signal") or (signal.Signals(forwarded[0]).name if forwarded else None)
    return Outcome(returncode, failures, stopped_by)
